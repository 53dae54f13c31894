using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Sharding;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Workers;

/// <summary>A run is over: its workers' shards no longer hold slots (published cluster-wide on <see cref="RunWorkers.ReleasedTopic"/>).</summary>
public sealed record RunWorkersReleased(string RunId) : ITrainingProtocol;

/// <summary>The run workers of one node: <c>RunWorkers.Get(system)</c>, started by <see cref="StartAsync"/>.</summary>
public sealed class RunWorkers : ExtensionIdProvider<RunWorkersExtension>
{
    /// <summary>The sharding type name of worker entities.</summary>
    public const string TypeName = "run-worker";

    public const string ReleasedTopic = "runtime.run-workers-released";

    public override RunWorkersExtension CreateExtension(ExtendedActorSystem system) => new(system);

    public static new RunWorkersExtension Get(ActorSystem system) => system.WithExtension<RunWorkersExtension, RunWorkers>();

    /// <summary>
    /// Starts the worker shard region (a proxy on nodes without the worker role) and the node's listener for finished
    /// runs, and makes a leaving node cancel its workers' waits, so their trainers can stop.
    /// </summary>
    public static async Task<IActorRef> StartAsync(ActorSystem system, RuntimeSettings settings)
    {
        var extension = Get(system);
        if (extension.Region is { } started) return started;
        var region = await WorkerSharding.StartAsync(system, TypeName, id => WorkerEntity.Props(id, settings.Worker), settings, extension.IsReleased);
        extension.Started(region);
        system.ActorOf(Akka.Actor.Props.Create(() => new ReleasedRunsListener(extension)), "run-workers-released");
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "cancel-worker-waits", () =>
        {
            foreach (var inbox in TensorChannels.Get(system).Router.LocalInboxes) inbox.Cancel();
            return Task.FromResult(Akka.Done.Instance);
        });
        return region;
    }

    /// <summary>Keeps the node's set of finished runs, whose worker shards the slot-aware allocation no longer counts.</summary>
    sealed class ReleasedRunsListener : ReceiveActor
    {
        public ReleasedRunsListener(RunWorkersExtension extension)
        {
            DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(ReleasedTopic, Self));
            Receive<SubscribeAck>(_ => { });
            Receive<RunWorkersReleased>(r => extension.MarkReleased(r.RunId));
        }
    }
}

public sealed class RunWorkersExtension(ExtendedActorSystem system) : IExtension
{
    readonly ConcurrentDictionary<string, byte> _released = new();

    /// <summary>The worker shard region (or proxy); null until <see cref="RunWorkers.StartAsync"/>.</summary>
    public IActorRef? Region { get; private set; }

    internal void Started(IActorRef region) => Region = region;

    /// <summary>The region, or a clear error when this node was started without workers.</summary>
    public IActorRef RequireRegion() =>
        Region ?? throw new InvalidOperationException($"the run-worker shard region was not started on {system.Provider.DefaultAddress} (RunWorkers.StartAsync)");

    /// <summary>Whether a worker shard belongs to a finished run (its slot is free again).</summary>
    public bool IsReleased(string shardId) => WorkerId.TryParse(shardId, out var worker) && _released.ContainsKey(worker.Value.RunId);

    internal void MarkReleased(string runId) => _released.TryAdd(runId, 0);

    /// <summary>Tells every node that <paramref name="runId"/>'s workers hold no slots any more.</summary>
    public void PublishReleased(string runId)
    {
        MarkReleased(runId);
        DistributedPubSub.Get(system).Mediator.Tell(new Publish(RunWorkers.ReleasedTopic, new RunWorkersReleased(runId)));
    }
}
