using Akka.Actor;
using Akka.Cluster;

namespace Runtime.Cluster.Hosting;

/// <summary>How many worker slots a run may count on; what a coordinator checks a spec's worker count against.</summary>
public interface ISlotInventory
{
    int AvailableSlots();
}

/// <summary>
/// The slots advertised by the cluster's reachable Up members with the worker role. Slots taken by other runs still
/// count: sharing the cluster between concurrent runs (queueing or refusing) is the scheduler's business, not the
/// spec's.
/// </summary>
public sealed class ClusterSlotInventory(ActorSystem system, string workerRole) : ISlotInventory
{
    public int AvailableSlots()
    {
        var state = Akka.Cluster.Cluster.Get(system).State;
        return state.Members
            .Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp && m.HasRole(workerRole) && !state.Unreachable.Contains(m))
            .Sum(m => NodeSlots.Of(m).Count);
    }
}

public sealed class FixedSlotInventory(int slots) : ISlotInventory
{
    public int AvailableSlots() => slots;
}
