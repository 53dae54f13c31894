using Akka.Actor;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Tests.Support;
using Runtime.Cluster.Workers;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// A run's driver sends InitializeWorker again to the workers that have not answered (delivery is at most once: right
/// after a node dies, a region may still route a shard to the dead node). A worker that did get the first one must
/// answer the second without loading its slice again. On a node of its own: the worker holds its slot until released.
/// </summary>
public sealed class WorkerPlacementTests
{
    [Fact]
    public async Task A_worker_asked_twice_for_the_same_attempt_answers_twice_and_loads_once()
    {
        using var dir = new TempDir();
        var run = new MicroRun(dir["micro"]);
        await using var node = await TrainingCluster.StartNode(dir["node"], slots: 1);
        var spec = run.Spec("asked-twice");
        var worker = new WorkerId("asked-twice", 0, 0, 0);
        var initialize = new InitializeWorker(worker, 1, spec, WorkerSlice.Of(RunRecipe.Stages(spec, MicroRun.Config)[0]), 6, null);
        var region = RunWorkers.Get(node.System).RequireRegion();

        var first = await region.Ask<WorkerReady>(initialize, TimeSpan.FromSeconds(60));
        var second = await region.Ask<WorkerReady>(initialize, TimeSpan.FromSeconds(60));

        // The same answer, load time included: a second load would have timed itself anew.
        Assert.Equal(first, second);
        region.Tell(new ReleaseWorker(worker, 1));
    }
}
