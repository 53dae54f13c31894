using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Sharding;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Sharding;

/// <summary>Worker shards placed by slots in a real cluster of in-process nodes.</summary>
public class SlotAllocationClusterTests
{
    public sealed record Where(WorkerId Worker) : IWorkerMessage;

    public sealed record Placed(string Entity, string Node);

    /// <summary>Answers where it runs.</summary>
    sealed class EchoWorker : ReceiveActor
    {
        public EchoWorker()
        {
            var node = Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString();
            Receive<Where>(_ => Sender.Tell(new Placed(Uri.UnescapeDataString(Self.Path.Name), node)));
        }
    }

    static Task<IActorRef> StartWorkers(RuntimeNode node) =>
        WorkerSharding.StartAsync(node.System, "test-worker", _ => Props.Create(() => new EchoWorker()), node.Settings);

    static async Task<string> NodeOf(IActorRef region, WorkerId worker, double seconds = 15)
    {
        var placed = await region.Ask<Placed>(new Where(worker), TimeSpan.FromSeconds(seconds));
        Assert.Equal(worker.ToString(), placed.Entity);
        return placed.Node;
    }

    static int RegionCount(IActorRef region) =>
        region.Ask<ClusterShardingStats>(new GetClusterShardingStats(TimeSpan.FromSeconds(3)), TimeSpan.FromSeconds(5))
            .GetAwaiter().GetResult().Regions.Count;

    [Fact]
    public async Task Workers_fill_nodes_by_advertised_slots_and_wait_for_capacity()
    {
        using var dir = new TempDir();
        await using var a = await TestNodes.StartUp(TestNodes.Options(dir["a"], slots: 1));
        await using var b = await TestNodes.StartUp(TestNodes.Options(dir["b"], slots: 2, a.Address.ToString()));
        await TestNodes.Eventually(() => a.Cluster.State.Members.Count(m => m.Status == MemberStatus.Up) == 2, "two members up");
        var region = await StartWorkers(a);
        await StartWorkers(b);
        // Placement sees only regions registered with the shard coordinator; wait until both are.
        await TestNodes.Eventually(() => RegionCount(region) == 2, "both worker regions to register");

        var placed = new Dictionary<string, string>();
        foreach (var w in new[] { new WorkerId("r", 0, 0, 0), new WorkerId("r", 0, 0, 1), new WorkerId("r", 0, 1, 0) })
            placed[w.ToString()] = await NodeOf(region, w);

        // Lowest address first, then the tensor-parallel peer where there is room (worked out by hand for both orders).
        string A = a.Address.ToString(), B = b.Address.ToString();
        var expected = Member.AddressOrdering.Compare(a.Address, b.Address) < 0
            ? new Dictionary<string, string> { ["run/r/0.0.0"] = A, ["run/r/0.0.1"] = B, ["run/r/0.1.0"] = B }
            : new Dictionary<string, string> { ["run/r/0.0.0"] = B, ["run/r/0.0.1"] = B, ["run/r/0.1.0"] = A };
        Assert.Equal(expected, placed);

        // Three slots, three workers: a fourth waits for capacity...
        var fourth = new WorkerId("r", 0, 1, 1);
        await Assert.ThrowsAsync<AskTimeoutException>(() => NodeOf(region, fourth, seconds: 2));

        // ...and is placed on the node that brings it.
        await using var c = await TestNodes.StartUp(TestNodes.Options(dir["c"], slots: 1, a.Address.ToString()));
        await StartWorkers(c);
        Assert.Equal(c.Address.ToString(), await NodeOf(region, fourth, seconds: 20));
    }

    [Fact]
    public async Task Rebalance_moves_nothing_but_hands_off_released_shards()
    {
        var system = ActorSystem.Create("rebalance-test", "akka.loglevel = WARNING");
        try
        {
            var region1 = system.ActorOf(Props.Empty, "region1");
            var region2 = system.ActorOf(Props.Empty, "region2");
            var allocations = ImmutableDictionary<IActorRef, IImmutableList<string>>.Empty
                .Add(region1, ImmutableList.Create("run/done/0.0.0", "run/live/0.0.0", "run/live/0.0.1"))
                .Add(region2, ImmutableList<string>.Empty);

            var keepAll = new SlotAwareAllocationStrategy();
            Assert.Empty(await keepAll.Rebalance(allocations, ImmutableHashSet<string>.Empty)); // 3 vs 0 shards: still no move

            var releasing = new SlotAwareAllocationStrategy(s => s.StartsWith("run/done/", StringComparison.Ordinal));
            Assert.Equal(["run/done/0.0.0"], await releasing.Rebalance(allocations, ImmutableHashSet<string>.Empty));
            Assert.Empty(await releasing.Rebalance(allocations, ImmutableHashSet.Create("run/done/0.0.0")));
        }
        finally
        {
            await system.Terminate();
        }
    }
}
