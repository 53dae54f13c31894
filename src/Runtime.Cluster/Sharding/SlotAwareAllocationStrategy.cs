using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Runtime.Cluster.Hosting;

namespace Runtime.Cluster.Sharding;

/// <summary>
/// Shard allocation for workers (one shard per worker): a new shard goes to a node with a free slot, chosen by
/// <see cref="SlotPlacement"/> from the slots each member advertises in its <c>slots:N</c> role. With no free slot
/// anywhere the allocation fails; the shard coordinator logs it and the region asks again (every
/// akka.cluster.sharding.retry-interval) until a slot frees up or a node joins.
/// Rebalancing never moves a live worker (a move costs the run a restart from its checkpoint): workers move only when
/// their node is lost. The one thing Rebalance does is hand off shards the caller has released (the workers of a
/// finished run), so they stop holding slots.
/// </summary>
public sealed class SlotAwareAllocationStrategy(Func<string, bool>? isReleased = null) : IActorSystemDependentAllocationStrategy
{
    readonly Func<string, bool> _isReleased = isReleased ?? (_ => false);
    Akka.Cluster.Cluster? _cluster;

    public void Start(ActorSystem system) => _cluster = Akka.Cluster.Cluster.Get(system);

    public Task<IActorRef> AllocateShard(IActorRef requester, string shardId, IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations)
    {
        var cluster = _cluster ?? throw new InvalidOperationException($"{nameof(SlotAwareAllocationStrategy)} was not started");
        var candidates = Candidates(currentShardAllocations, cluster.State, cluster.SelfAddress);
        var region = SlotPlacement.Choose(shardId, candidates, _isReleased);
        if (region is not null) return Task.FromResult(region);
        int slots = candidates.Where(c => c.Available).Sum(c => c.Slots);
        int used = candidates.Where(c => c.Available).Sum(c => c.Shards.Count(s => !_isReleased(s)));
        return Task.FromException<IActorRef>(new InvalidOperationException(
            $"no free worker slot for {shardId}: {used} of {slots} slots on {candidates.Count(c => c.Available)} available nodes are taken; it is placed when a slot frees up or a node joins"));
    }

    public Task<IImmutableSet<string>> Rebalance(IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations, IImmutableSet<string> rebalanceInProgress) =>
        Task.FromResult<IImmutableSet<string>>(currentShardAllocations.Values
            .SelectMany(shards => shards)
            .Where(s => _isReleased(s) && !rebalanceInProgress.Contains(s))
            .ToImmutableHashSet());

    /// <summary>Each region with its member's slots; regions whose member is not (yet) known are left out.</summary>
    public static IReadOnlyList<SlotCandidate<IActorRef>> Candidates(
        IImmutableDictionary<IActorRef, IImmutableList<string>> allocations, ClusterEvent.CurrentClusterState state, Address self)
    {
        var members = state.Members.ToDictionary(m => m.Address);
        var candidates = new List<SlotCandidate<IActorRef>>();
        foreach (var (region, shards) in allocations)
        {
            var address = region.Path.Address.HasLocalScope ? self : region.Path.Address;
            if (!members.TryGetValue(address, out var member)) continue;
            bool available = member.Status is MemberStatus.Up or MemberStatus.WeaklyUp && !state.Unreachable.Contains(member);
            candidates.Add(new SlotCandidate<IActorRef>(region, address, NodeSlots.Of(member).Count, shards, available));
        }
        return candidates;
    }
}
