using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Configuration;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Cluster.Workers;
using Xunit.Abstractions;
using ShardingWorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// Three in-process nodes joined over 127.0.0.1, one worker slot each, one journal (a shared data folder, as nodes of
/// one machine share it): a two-worker run spreads over two nodes, so the worker protocol crosses remoting and tensors
/// cross the tensor sockets; the third node is the spare a lost node's worker moves to.
/// </summary>
public sealed class MultiNodeTrainingTests(ITestOutputHelper output) : IAsyncLifetime
{
    // Fast failure handling for a test: downing is done by hand (Cluster.Down), and a downed node's shards may move
    // after 2 s instead of 10 (reference.conf explains the production values).
    static readonly Config FastFailover = ConfigurationFactory.ParseString("""
        akka.cluster.down-removal-margin = 2s
        akka.cluster.split-brain-resolver.stable-after = 2s
        akka.cluster.failure-detector.acceptable-heartbeat-pause = 2s
        """);

    readonly TempDir _dir = new();
    readonly List<RuntimeNode> _nodes = [];
    MicroRun _run = null!;

    public async Task InitializeAsync()
    {
        _run = new MicroRun(_dir["micro"]);
        var first = await Start();
        for (int i = 0; i < 2; i++) await Start(first.Address.ToString());
        await TestNodes.Eventually(() => _nodes.All(n => n.Cluster.State.Members.Count(m => m.Status == MemberStatus.Up) == 3), "three members up");
        await TestNodes.Eventually(() => RegionCount(first.RunWorkers) == 3, "every node's worker region registered");
    }

    async Task<RuntimeNode> Start(params string[] seeds)
    {
        var options = TestNodes.Options(_dir["data"], slots: 1, seeds) with { RunDriver = TrainingRunDriver.Instance };
        var node = await TestNodes.StartUp(options with { Overrides = FastFailover.WithFallback(options.Overrides) });
        _nodes.Add(node);
        return node;
    }

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes.Where(n => !n.WhenTerminated.IsCompleted)) await node.System.Terminate();
        _dir.Dispose();
    }

    static int RegionCount(IActorRef region) =>
        region.Ask<ClusterShardingStats>(new GetClusterShardingStats(TimeSpan.FromSeconds(3)), TimeSpan.FromSeconds(5))
            .GetAwaiter().GetResult().Regions.Count;

    async Task<RunStatus> Train(RunClient client, RunSpec spec, double seconds = 120)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var status = await client.RunAsync(spec, cancellationToken: timeout.Token);
        Assert.True(status.Phase == RunPhase.Completed, $"run {spec.Name} ended {status.Phase}: {status.Reason}");
        return status;
    }

    RuntimeNode HostOf(IEnumerable<RuntimeNode> nodes, Func<RuntimeNode, IActorRef> region, string entity) =>
        nodes.Single(n => TestNodes.Hosts(region(n), entity));

    [Fact]
    public async Task Workers_on_two_nodes_train_what_one_worker_trains_and_a_lost_node_costs_one_attempt()
    {
        var client = RunClient.For(_nodes[0]);
        var yardstick = TrainingCluster.TrainingLoopAdapter(_run, steps: 6);

        // Two stages on two nodes: activations and gradients cross the tensor socket.
        var pipeline = _run.Spec("nodes-pp2", data: 1, pipeline: 2);
        await Train(client, pipeline);
        var pipelined = MicroRun.Adapter(Path.Combine(pipeline.Output, RunOutputs.AdapterFolder));
        Assert.Equal(0, MicroRun.RelativeDifference(yardstick, pipelined));

        // Two replicas on two nodes: the gradient all-reduce crosses it.
        var replicas = _run.Spec("nodes-dp2", data: 2, pipeline: 1, more: ["train.max-steps=24", "checkpoint.every-steps=4"]);
        await Train(client, replicas);
        var reference = MicroRun.Adapter(Path.Combine(replicas.Output, RunOutputs.AdapterFolder));

        // The same run again; once checkpoint 4 is committed, the node of a worker (not the coordinator's) dies.
        var spec = _run.Spec("nodes-dp2-lost", data: 2, pipeline: 1, more: ["train.max-steps=24", "checkpoint.every-steps=4"]);
        var progress = ProgressLog.On(_nodes[0].System);
        foreach (var node in _nodes.Skip(1)) ProgressLog.Into(progress, node.System);
        var id = await client.SubmitAsync(spec);
        await TestNodes.Eventually(() => progress.Of<CheckpointSaved>(id).Any(c => c.Step == 4), "checkpoint 4", 60);
        var coordinatorNode = HostOf(_nodes, n => n.RunCoordinators, id);
        var victim = _nodes.First(n => n != coordinatorNode &&
            (TestNodes.Hosts(n.RunWorkers, new ShardingWorkerId(id, 0, 0, 0).ToString()) ||
             TestNodes.Hosts(n.RunWorkers, new ShardingWorkerId(id, 1, 0, 0).ToString())));
        var victimAddress = victim.Address;
        await victim.System.Terminate();
        coordinatorNode.Cluster.Down(victimAddress);

        var survivor = RunClient.For(coordinatorNode);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var status = await survivor.WaitAsync(id, cancellationToken: timeout.Token);
        Assert.True(status.Phase == RunPhase.Completed, $"ended {status.Phase}: {status.Reason}");
        Assert.Equal(2, status.Attempt);
        var restart = progress.Of<TrainingStarted>(id).Last();
        output.WriteLine($"node {victimAddress} lost after checkpoint 4; attempt {restart.Attempt} resumed after step {restart.ResumeStep}: " +
                         string.Join("; ", progress.Of<AttemptAborted>(id).Select(a => a.Reason)));
        Assert.Equal((2, 4L), (restart.Attempt, restart.ResumeStep));
        var actual = MicroRun.Adapter(Path.Combine(spec.Output, RunOutputs.AdapterFolder));
        Assert.Equal(0, MicroRun.RelativeDifference(reference, actual));
    }
}
