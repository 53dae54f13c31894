using Akka.Actor;
using Akka.Cluster;

namespace Runtime.Cluster.Sharding;

/// <summary>A shard region as slot placement sees it: its node's address and slots, the shards it holds, and whether
/// new work may go there (Up and reachable).</summary>
public sealed record SlotCandidate<TRegion>(TRegion Region, Address Address, int Slots, IReadOnlyList<string> Shards, bool Available);

/// <summary>
/// Where a new worker goes, as a pure function of the current allocation. A node's used slots are the shards it holds
/// (one shard per worker), minus released ones. Among nodes with a free slot it prefers the one already holding the
/// worker's closest relatives: its stage's other tensor-parallel ranks (they exchange activations every layer), then
/// its pipeline replica, then its run; ties go to the lowest address. So a run fills nodes one after another
/// (packing, not spreading): a tensor-parallel group stays inside one node when node sizes allow, and pipelines cross
/// as few node boundaries as possible. Nothing is ever moved to improve this later.
/// </summary>
public static class SlotPlacement
{
    /// <returns>The chosen region, or null when no available node has a free slot.</returns>
    public static TRegion? Choose<TRegion>(string shardId, IEnumerable<SlotCandidate<TRegion>> candidates, Func<string, bool> isReleased)
        where TRegion : class
    {
        WorkerId.TryParse(shardId, out var worker);
        SlotCandidate<TRegion>? best = null;
        int bestAffinity = -1;
        foreach (var candidate in candidates.Where(c => c.Available).OrderBy(c => c.Address, Member.AddressOrdering))
        {
            var held = candidate.Shards.Where(s => !isReleased(s)).ToList();
            if (held.Count >= candidate.Slots) continue;
            int affinity = worker is { } w ? held.Select(s => Affinity(w, s)).DefaultIfEmpty(0).Max() : 0;
            if (affinity > bestAffinity)
            {
                best = candidate;
                bestAffinity = affinity;
            }
        }
        return best?.Region;
    }

    /// <summary>3: same stage (tensor-parallel peers), 2: same replica, 1: same run, 0: unrelated.</summary>
    static int Affinity(WorkerId worker, string shardId) =>
        !WorkerId.TryParse(shardId, out var other) ? 0
        : worker.SameStage(other.Value) ? 3
        : worker.SameReplica(other.Value) ? 2
        : worker.RunId == other.Value.RunId ? 1
        : 0;
}
