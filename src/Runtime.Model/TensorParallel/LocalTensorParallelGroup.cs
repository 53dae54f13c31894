using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Tensor-parallel ranks in one process, each driven by its own thread (tests, single-process runs). An all-reduce is
/// a rendezvous: every rank hands in its tensor and waits at a barrier; then every rank computes the same sum itself,
/// adding the contributions in rank order 0 .. n-1 (in float32 for bf16/fp16 tensors, rounded once), so every rank gets
/// identical bits; a second barrier lets each rank overwrite its own tensor only after all have read it.
/// <para>
/// A rank whose thread fails should call <see cref="Abort"/>: the others, waiting in an all-reduce that will never
/// complete, then throw instead of hanging; so does a wait longer than the timeout. Ranks that contribute different
/// shapes or dtypes, or that are in different calls (a rank skipped or added a collective), all throw, naming both.
/// </para>
/// </summary>
public sealed class LocalTensorParallelGroup : ITensorParallelGroup
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(5);

    sealed class Rendezvous(int size, TimeSpan timeout)
    {
        public readonly Barrier Barrier = new(size);
        public readonly Tensor?[] Contributions = new Tensor?[size];
        public readonly long[] Calls = new long[size];
        public readonly CancellationTokenSource Aborted = new();
        public readonly TimeSpan Timeout = timeout;
    }

    readonly Rendezvous shared;
    long calls;

    LocalTensorParallelGroup(Rendezvous shared, int rank, int size)
    {
        this.shared = shared;
        Rank = rank;
        Size = size;
    }

    /// <summary>The <paramref name="size"/> members of a new group, indexed by rank; give each to its own thread.</summary>
    public static IReadOnlyList<LocalTensorParallelGroup> Create(int size, TimeSpan? timeout = null)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "a tensor-parallel group needs at least one rank");
        var wait = timeout ?? DefaultTimeout;
        if (wait <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), wait, "the timeout must be positive");
        var shared = new Rendezvous(size, wait);
        return Enumerable.Range(0, size).Select(rank => new LocalTensorParallelGroup(shared, rank, size)).ToArray();
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>All-reduces this member has started.</summary>
    public long Calls => Interlocked.Read(ref calls);

    public void AllReduceSumInPlace(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous())
            throw new ArgumentException($"tp rank {Rank}: the all-reduce needs a contiguous tensor; got [{string.Join(", ", tensor.shape)}] with strides [{string.Join(", ", tensor.stride())}]");
        long call = Interlocked.Increment(ref calls);
        if (Size == 1) return;
        if (shared.Aborted.IsCancellationRequested)
            throw new OperationCanceledException($"tp rank {Rank} of {Size}: the group was aborted (another rank failed)");

        shared.Contributions[Rank] = tensor;
        shared.Calls[Rank] = call;
        Wait(call);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // Every rank checks and sums the same contributions; none leaves (or clears its slot) before all have read them.
        var mismatch = Mismatch(call);
        Tensor? sum = null;
        try
        {
            if (mismatch is null) sum = SumInRankOrder(tensor);
        }
        catch
        {
            Abort(); // the others would wait for this rank at the second barrier
            throw;
        }
        Wait(call);
        shared.Contributions[Rank] = null;
        if (mismatch is not null) throw new InvalidOperationException(mismatch);
        tensor.copy_(sum!);
    }

    /// <summary>Releases every rank waiting in this group with an exception; the group is unusable afterwards.</summary>
    public void Abort() => shared.Aborted.Cancel();

    Tensor SumInRankOrder(Tensor own)
    {
        var accumulate = own.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : own.dtype;
        Tensor? sum = null;
        foreach (var contribution in shared.Contributions)
        {
            var part = contribution!.to(own.device).to(accumulate);
            // The first part may alias rank 0's tensor (to() returns it unchanged): copy it before adding into it.
            if (sum is null) sum = part.clone();
            else sum.add_(part);
        }
        return sum!;
    }

    /// <summary>What is wrong with the contributions, or null. Every rank runs it on the same data, so all agree.</summary>
    string? Mismatch(long call)
    {
        var first = shared.Contributions[0]!;
        for (int r = 1; r < Size; r++)
        {
            var other = shared.Contributions[r]!;
            if (shared.Calls[r] != shared.Calls[0])
                return $"tp rank {Rank} of {Size}: ranks are out of step: rank 0 is in all-reduce {shared.Calls[0]}, rank {r} in all-reduce {shared.Calls[r]}";
            if (other.dtype != first.dtype || !other.shape.SequenceEqual(first.shape))
                return $"tp rank {Rank} of {Size}, all-reduce {call}: rank 0 contributed {first.dtype} [{string.Join(", ", first.shape)}], rank {r} {other.dtype} [{string.Join(", ", other.shape)}]";
        }
        return null;
    }

    void Wait(long call)
    {
        bool arrived;
        try
        {
            arrived = shared.Barrier.SignalAndWait(shared.Timeout, shared.Aborted.Token);
        }
        catch (OperationCanceledException)
        {
            throw new OperationCanceledException($"tp rank {Rank} of {Size}: all-reduce {call} was aborted (another rank failed)");
        }
        if (arrived) return;
        shared.Aborted.Cancel();
        throw new TimeoutException($"tp rank {Rank} of {Size}: all-reduce {call} waited {shared.Timeout} for the other ranks");
    }
}
