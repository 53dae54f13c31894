using Akka.Actor;
using Runtime.Cluster.Sharding;

namespace Runtime.Cluster.Tests.Sharding;

/// <summary>The placement decision alone: regions are names, nodes are addresses on one host.</summary>
public class SlotPlacementTests
{
    static SlotCandidate<string> Node(int port, int slots, params string[] shards) =>
        new($"node{port}", new Address("akka.tcp", "runtime", "10.0.0.1", port), slots, shards, Available: true);

    static string? Choose(string shard, params SlotCandidate<string>[] nodes) => SlotPlacement.Choose(shard, nodes, _ => false);

    [Fact]
    public void Fills_the_lowest_address_first()
    {
        Assert.Equal("node4001", Choose("run/r/0.0.0", Node(4002, 2), Node(4001, 2), Node(4003, 2)));
        Assert.Equal("node4002", Choose("run/r/0.0.0", Node(4002, 2), Node(4001, 2, "run/x/0.0.0", "run/x/0.0.1")));
    }

    [Fact]
    public void A_node_is_full_when_its_shards_equal_its_slots()
    {
        Assert.Null(Choose("run/r/0.0.2", Node(4001, 1, "run/r/0.0.0"), Node(4002, 1, "run/r/0.0.1")));
        Assert.Null(Choose("run/r/0.0.0", Node(4001, 0)));
    }

    [Fact]
    public void Tensor_parallel_peers_come_first()
    {
        // Node 4001 has room but no relative; 4002 has the same stage's rank 0.
        var chosen = Choose("run/r/0.1.1",
            Node(4001, 4, "run/r/0.0.0"),
            Node(4002, 4, "run/r/0.1.0"),
            Node(4003, 4, "run/r/1.1.0"));
        Assert.Equal("node4002", chosen);
    }

    [Fact]
    public void Then_the_same_replica_then_the_same_run()
    {
        Assert.Equal("node4002", Choose("run/r/0.1.0", Node(4001, 4, "run/r/1.0.0"), Node(4002, 4, "run/r/0.0.0")));
        Assert.Equal("node4002", Choose("run/r/1.0.0", Node(4001, 4, "run/other/0.0.0"), Node(4002, 4, "run/r/0.0.0")));
    }

    [Fact]
    public void A_full_relative_is_skipped_for_the_next_best()
    {
        Assert.Equal("node4003", Choose("run/r/0.0.1",
            Node(4001, 4),
            Node(4002, 1, "run/r/0.0.0"),
            Node(4003, 4, "run/r/0.1.0")));
    }

    [Fact]
    public void Unavailable_nodes_get_nothing()
    {
        var leaving = Node(4001, 8) with { Available = false };
        Assert.Equal("node4002", Choose("run/r/0.0.0", leaving, Node(4002, 1)));
        Assert.Null(Choose("run/r/0.0.0", leaving));
    }

    [Fact]
    public void Released_shards_do_not_hold_slots()
    {
        var nodes = new[] { Node(4001, 1, "run/done/0.0.0") };
        Assert.Null(SlotPlacement.Choose("run/r/0.0.0", nodes, _ => false));
        Assert.Equal("node4001", SlotPlacement.Choose("run/r/0.0.0", nodes, s => s.StartsWith("run/done/")));
    }

    [Fact]
    public void A_whole_layout_packs_node_by_node_keeping_tensor_groups_together()
    {
        // Two 4-slot nodes; d2 x p2 x t2 = 8 workers allocated in rank order; the expected placement is worked out by hand.
        var nodes = new Dictionary<int, List<string>> { [4001] = [], [4002] = [] };
        foreach (var d in new[] { 0, 1 })
        foreach (var p in new[] { 0, 1 })
        foreach (var t in new[] { 0, 1 })
        {
            var shard = new WorkerId("r", d, p, t).ToString();
            var region = Choose(shard, nodes.Select(n => Node(n.Key, 4, [.. n.Value])).ToArray());
            nodes[int.Parse(region!["node".Length..])].Add(shard);
        }
        Assert.Equal(["run/r/0.0.0", "run/r/0.0.1", "run/r/0.1.0", "run/r/0.1.1"], nodes[4001]); // replica 0 on one node
        Assert.Equal(["run/r/1.0.0", "run/r/1.0.1", "run/r/1.1.0", "run/r/1.1.1"], nodes[4002]); // replica 1 on the other
    }
}
