using Akka.Cluster;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Hosting;

/// <summary>Real nodes on loopback TCP started from hocon/node.conf.</summary>
public class ClusterFormationTests
{
    static int UpMembers(RuntimeNode node) => node.Cluster.State.Members.Count(m => m.Status == MemberStatus.Up);

    [Fact]
    public async Task Three_nodes_form_a_cluster_advertise_slots_and_leave_or_are_downed()
    {
        using var dir = new TempDir();
        NodeOptions Options(int slots, params string[] seeds) =>
            TestNodes.Options(dir.Path, slots, seeds) with { ConfigFiles = [Repo.Hocon("node.conf")] };

        await using var first = await TestNodes.StartUp(Options(1)); // no seeds: it joins itself
        var seed = first.Address.ToString();
        var second = await TestNodes.StartUp(Options(2, seed));
        var third = await TestNodes.StartUp(Options(3, seed));
        foreach (var node in new[] { first, second, third })
            await TestNodes.Eventually(() => UpMembers(node) == 3, $"{node.Address} to see 3 members up");

        // Every node reads every other node's slots from its membership roles.
        var seen = third.Cluster.State.Members.ToDictionary(m => m.Address, NodeSlots.Of);
        // FixedSlotProbe's 16 GiB shared by each node's slots.
        Assert.Equal(new NodeSlots(1, SlotKind.Cpu, 16L << 30), seen[first.Address]);
        Assert.Equal(new NodeSlots(2, SlotKind.Cpu, 8L << 30), seen[second.Address]);
        Assert.Equal(new NodeSlots(3, SlotKind.Cpu, (16L << 30) / 3), seen[third.Address]);
        Assert.Equal(6, new ClusterSlotInventory(first.System, "worker").AvailableSlots());

        // A graceful leave: the others see it go; its exit says it left.
        await second.LeaveAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await second.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(NodeExit.Left, second.Exit);
        await TestNodes.Eventually(() => first.Cluster.State.Members.Count == 2, "the leaver to be removed");
        Assert.Equal(4, new ClusterSlotInventory(first.System, "worker").AvailableSlots());

        // Downed by the cluster: it shuts itself down and says so.
        first.Cluster.Down(third.Address);
        await third.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(NodeExit.Downed, third.Exit);
        await TestNodes.Eventually(() => first.Cluster.State.Members.Count == 1, "the downed node to be removed");
        Assert.Equal(1, new ClusterSlotInventory(first.System, "worker").AvailableSlots());
    }
}
