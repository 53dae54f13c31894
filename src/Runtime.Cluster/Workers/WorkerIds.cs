using Runtime.Cluster.Sharding;
using ChannelWorker = Runtime.Cluster.Channels.WorkerId;

namespace Runtime.Cluster.Workers;

/// <summary>
/// The ids of a run's workers. Sharding names a worker <c>run/&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c>
/// (<see cref="WorkerId"/>); the tensor channels name the same worker <c>&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c>.
/// </summary>
public static class WorkerIds
{
    public static ChannelWorker ToChannel(this WorkerId worker) => new(worker.RunId, worker.Data, worker.Pipeline, worker.Tensor);

    public static WorkerId ToSharding(this ChannelWorker worker) => new(worker.Run, worker.Data, worker.Stage, worker.Tensor);

    /// <summary>Every worker of a layout, replica by replica, stage by stage, rank by rank.</summary>
    public static IReadOnlyList<WorkerId> All(string runId, int data, int pipeline, int tensor) =>
        (from d in Enumerable.Range(0, data)
         from p in Enumerable.Range(0, pipeline)
         from t in Enumerable.Range(0, tensor)
         select new WorkerId(runId, d, p, t)).ToList();

    /// <summary>The worker's name in checkpoint shard file names ("d.p.t").</summary>
    public static string ShardName(this WorkerId worker) => $"{worker.Data}.{worker.Pipeline}.{worker.Tensor}";
}
