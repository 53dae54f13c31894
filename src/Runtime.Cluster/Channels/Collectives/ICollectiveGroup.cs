using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Collectives;

/// <summary>
/// Names one collective call: every member passes the same key, and two collectives in flight at once in one group
/// must differ in it (the <see cref="Sequence"/> numbers them within a step).
/// </summary>
public readonly record struct CollectiveKey(long Attempt, long Step, long Sequence, int MicroBatch = -1);

/// <summary>
/// A fixed, ordered list of workers that reduce together, e.g. the data-parallel replicas of one (stage, tensor rank).
/// Every member calls the same operations with the same keys, each on its own worker thread; calls block until the
/// member's part is done. Results are bitwise identical on every member.
/// </summary>
public interface ICollectiveGroup
{
    GroupKind Kind { get; }

    IReadOnlyList<WorkerId> Members { get; }

    /// <summary>This member's index in <see cref="Members"/>.</summary>
    int Rank { get; }

    /// <summary>Replaces <paramref name="tensor"/> (contiguous, same shape and dtype on every member) by the sum over members.</summary>
    void AllReduceSumInPlace(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default);

    /// <summary>The sum over members as a new tensor (in the caller's dispose scope); <paramref name="tensor"/> is left as it is.</summary>
    Tensor AllReduceSum(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default);

    /// <summary>The sum of a scalar over members (squared gradient norms, token counts), summed in double.</summary>
    double AllReduceSum(double value, CollectiveKey key, CancellationToken cancellationToken = default);

    /// <summary>Overwrites <paramref name="tensor"/> on every member with member <paramref name="root"/>'s values.</summary>
    void BroadcastInPlace(Tensor tensor, int root, CollectiveKey key, CancellationToken cancellationToken = default);
}
