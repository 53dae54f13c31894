using System.Runtime.ExceptionServices;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using Runtime.Model.TensorParallel;
using static TorchSharp.torch;

namespace Runtime.Cluster.Workers;

/// <summary>
/// A worker's tensor-parallel collective group (the T ranks of its replica and stage, in rank order) as the model's
/// <see cref="ITensorParallelGroup"/>: the Megatron regions of its slice, the vocabulary-parallel loss and the
/// reduction of partial gradients all-reduce through it.
/// <para>
/// Keys. The model's calls carry no name, so the n-th call since <see cref="BeginStep"/> is
/// <c>CollectiveKey(attempt, step, n, micro-batch)</c>: the ranks of a stage run the same pipeline schedule and build
/// the same graphs (forward, recompute and backward alike), so their n-th calls are the same all-reduce. The
/// micro-batch (<see cref="At"/>; -1 for the step's gradient reduction) is part of the key for diagnosis only.
/// </para>
/// <para>
/// Failures. Autograd runs the backward's calls from a native callback (libtorch's engine calling into a TorchSharp
/// custom function); an exception cannot unwind through those frames, and .NET would end the process. So a call that
/// fails (the attempt was aborted and the inbox cancelled, a peer timed out, shapes differ) is recorded, its tensor is
/// left as it is, every later call of the step returns at once, and the worker rethrows the failure, with its original
/// type, through <see cref="ThrowIfFailed"/> after each forward, each backward and the gradient reduction.
/// </para>
/// Used from the worker's one thread (on CPU autograd calls back on the thread that runs the backward).
/// </summary>
public sealed class CollectiveTensorParallelGroup : ITensorParallelGroup
{
    readonly ICollectiveGroup _group;
    readonly int _attempt;
    long _step;
    int _microBatch = -1;
    long _calls;
    ExceptionDispatchInfo? _failure;

    public CollectiveTensorParallelGroup(ICollectiveGroup group, int attempt)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (group.Kind != GroupKind.TensorParallel)
            throw new ArgumentException($"a tensor-parallel group is a {GroupKind.TensorParallel} collective group, not {group.Kind}", nameof(group));
        _group = group;
        _attempt = attempt;
    }

    public int Rank => _group.Rank;

    public int Size => _group.Members.Count;

    /// <summary>Starts the numbering of step <paramref name="step"/>'s all-reduces and forgets an earlier step's failure.</summary>
    public void BeginStep(long step)
    {
        _step = step;
        _microBatch = -1;
        _calls = 0;
        _failure = null;
    }

    /// <summary>The global micro-batch the next calls belong to; -1 for per-step calls.</summary>
    public void At(int microBatch) => _microBatch = microBatch;

    public void AllReduceSumInPlace(Tensor tensor)
    {
        if (_failure is not null) return;
        var key = new CollectiveKey(_attempt, _step, _calls++, _microBatch);
        try
        {
            _group.AllReduceSumInPlace(tensor, key);
        }
        catch (Exception e)
        {
            _failure = ExceptionDispatchInfo.Capture(e);
        }
    }

    /// <summary>Rethrows the first failed all-reduce of the step, if any.</summary>
    public void ThrowIfFailed() => _failure?.Throw();
}
