using Akka.Actor;
using Akka.Cluster;

namespace Runtime.Cluster.Hosting;

/// <summary>One node's worker slots, as a run could get them.</summary>
/// <param name="Node">The node's address (for messages).</param>
public sealed record SlotOffer(string Node, NodeSlots Slots);

/// <summary>The worker slots a run may count on; what a coordinator checks a spec's workers and memory plan against.</summary>
public interface ISlotInventory
{
    /// <summary>Every node that offers slots (nodes with none left out).</summary>
    IReadOnlyList<SlotOffer> Offers();
}

public static class SlotInventoryExtensions
{
    public static int AvailableSlots(this ISlotInventory inventory) => inventory.Offers().Sum(o => o.Slots.Count);
}

/// <summary>
/// The slots advertised by the cluster's reachable Up members with the worker role. Slots taken by other runs still
/// count: sharing the cluster between concurrent runs (queueing or refusing) is the scheduler's business, not the
/// spec's.
/// </summary>
public sealed class ClusterSlotInventory(ActorSystem system, string workerRole) : ISlotInventory
{
    public IReadOnlyList<SlotOffer> Offers()
    {
        var state = Akka.Cluster.Cluster.Get(system).State;
        return state.Members
            .Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp && m.HasRole(workerRole) && !state.Unreachable.Contains(m))
            .Select(m => new SlotOffer(m.Address.ToString(), NodeSlots.Of(m)))
            .Where(o => o.Slots.Count > 0)
            .ToList();
    }
}

/// <summary>Slots of one imagined node (tests; a node checking a run against its own slots before it starts).</summary>
public sealed class FixedSlotInventory(NodeSlots slots, string node = "this node") : ISlotInventory
{
    /// <summary><paramref name="slots"/> CPU slots of unknown memory: the memory plan is not checked.</summary>
    public FixedSlotInventory(int slots) : this(new NodeSlots(slots, SlotKind.Cpu))
    {
    }

    public IReadOnlyList<SlotOffer> Offers() => slots.Count > 0 ? [new SlotOffer(node, slots)] : [];
}
