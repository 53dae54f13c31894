using Runtime.Model.Llama;
using Runtime.Training.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Metrics;

/// <summary>
/// A training step's memory by the planner's categories (<see cref="Planning.MemoryBreakdown"/>), measured.
/// The four parameter-sized ones are counted from the tensors themselves, at the end of the step's last backward (after
/// the gradients were folded into the fp32 masters, before the optimizer update):
/// <list type="bullet">
/// <item><see cref="Weights"/>: frozen parameters of the slice (every one that does not require grad; a tied
/// embedding once) plus the NF4 buffers of 4-bit projections (codes, absmax, nested statistics, code table).</item>
/// <item><see cref="Trainable"/>: the parameters that require grad, in the model's dtype (bf16 weights of bf16 full
/// fine-tuning count 2 bytes; their fp32 masters are optimizer state, as the planner counts them).</item>
/// <item><see cref="Gradients"/>: every <c>.grad</c> of the trainable parameters and of the fp32 masters.</item>
/// <item><see cref="Optimizer"/>: AdamW's exp_avg and exp_avg_sq, and the fp32 masters when there are any.</item>
/// </list>
/// Activations come from the C allocator (<see cref="NativeHeap"/>), per micro-batch, since only it sees what
/// autograd keeps: <see cref="ActivationsSaved"/> is the bytes in use after the micro-batch's forward less those in
/// use just before it (the saved-for-backward set: what autograd, the recompute checkpoints and the attention context
/// hold between forward and backward). <see cref="ActivationsPeak"/> (only when the peak is watched) is the highest
/// reading from the start of the forward to the end of the backward less the reading before the forward, taken part by
/// part of the backward, each less the gradients made before that part began (see <see cref="ActivationMeter"/>).
/// Over several micro-batches each is the largest. <see cref="HeapInUse"/> is the allocator's total after the last backward.
/// </summary>
public sealed record StepMemory(long Weights, long Trainable, long Gradients, long Optimizer, long ActivationsSaved,
    long? ActivationsPeak, long HeapInUse)
{
    /// <summary>TensorBoard tags (bytes).</summary>
    public IEnumerable<(string Tag, double Value)> Scalars()
    {
        yield return ("memory/weights_bytes", Weights);
        yield return ("memory/trainable_bytes", Trainable);
        yield return ("memory/gradients_bytes", Gradients);
        yield return ("memory/optimizer_bytes", Optimizer);
        if (ActivationsSaved >= 0) yield return ("memory/activations_saved_bytes", ActivationsSaved);
        if (ActivationsPeak is { } peak) yield return ("memory/activations_peak_bytes", peak);
        if (HeapInUse >= 0) yield return ("memory/heap_in_use_bytes", HeapInUse);
    }
}

/// <summary>Counting the tensor categories of <see cref="StepMemory"/>.</summary>
public static class MemoryAccounting
{
    /// <summary>Frozen weights and NF4 buffers of the slice.</summary>
    public static long WeightBytes(LlamaSlice slice)
    {
        long bytes = slice.parameters().Where(p => !p.requires_grad).Sum(Bytes);
        foreach (var module in slice.modules())
            if (module is Projection { QuantizedWeight: { } nf4 }) bytes += nf4.ResidentBytes;
        return bytes;
    }

    /// <summary>Parameters that require grad, in the model's dtype.</summary>
    public static long TrainableBytes(LlamaSlice slice) => slice.parameters().Where(p => p.requires_grad).Sum(Bytes);

    /// <summary>The gradients that exist now: of the engine's trainable parameters and of the optimizer's (fp32 masters).</summary>
    public static long GradientBytes(StageEngine engine, OptimizerStep optimizer)
    {
        using var scope = NewDisposeScope();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        long bytes = 0;
        foreach (var (_, parameter) in engine.TrainableParameters.Concat(optimizer.Parameters))
            if (seen.Add(parameter) && parameter.grad is { } grad) bytes += Bytes(grad);
        return bytes;
    }

    /// <summary>The four tensor categories now, with the given activation readings.</summary>
    public static StepMemory Measure(StageEngine engine, OptimizerStep optimizer, long activationsSaved = -1, long? activationsPeak = null) =>
        new(WeightBytes(engine.Slice), TrainableBytes(engine.Slice), GradientBytes(engine, optimizer), optimizer.StateBytes,
            activationsSaved, activationsPeak, NativeHeap.BytesInUse());

    static long Bytes(Tensor t) => t.NumberOfElements * t.ElementSize;
}

/// <summary>
/// The allocator readings around each micro-batch of a step (see <see cref="StepMemory"/>): call
/// <see cref="BeforeForward"/>, <see cref="AfterForward"/>, <see cref="PartCompleted"/> after each part of the backward
/// (<see cref="StageEngine.BackwardPartCompleted"/>) and <see cref="AfterBackward"/>.
/// </summary>
/// <remarks>
/// The peak of a part is taken less the gradients that existed when the part began: a gradient the part creates is
/// counted in it (its bytes are there at the part's end, and when gradients accumulate the same bytes are a transient
/// of every micro-batch). The parts are small enough for this to matter only where one is large and made next to a
/// large activation: the LM head's weight gradient (V x h) while the loss gradient (seq x V) is alive, which stays
/// under the loss's own peak while seq &gt; h / 2. Without recompute the whole backward is one part.
/// </remarks>
public sealed class ActivationMeter : IDisposable
{
    readonly HeapPeakWatcher? _watcher;
    readonly Func<long> _gradientBytes;
    long _before, _gradientsBefore, _gradientsAtPartStart;

    /// <param name="gradientBytes">The gradient bytes that exist now (<see cref="MemoryAccounting.GradientBytes"/>).</param>
    /// <param name="watchPeak">Also sample the peak from a background thread (costs a core while the step runs).</param>
    public ActivationMeter(Func<long> gradientBytes, bool watchPeak)
    {
        if (!NativeHeap.IsAvailable) throw new PlatformNotSupportedException("glibc's mallinfo2 is not available: activations cannot be measured here");
        _gradientBytes = gradientBytes;
        if (watchPeak) _watcher = new HeapPeakWatcher();
    }

    /// <summary>The largest saved-for-backward set of the micro-batches so far.</summary>
    public long Saved { get; private set; }

    /// <summary>The largest peak of the micro-batches so far (null when not watched).</summary>
    public long? Peak { get; private set; }

    public void BeforeForward()
    {
        _gradientsBefore = _gradientsAtPartStart = _gradientBytes();
        _before = NativeHeap.BytesInUse();
        _watcher?.Reset();
    }

    public void AfterForward() => Saved = Math.Max(Saved, NativeHeap.BytesInUse() - _before);

    /// <summary>A part of the backward ended: close its window.</summary>
    public void PartCompleted()
    {
        if (_watcher is null) return;
        long peak = _watcher.Peak - _before - (_gradientsAtPartStart - _gradientsBefore);
        Peak = Math.Max(Peak ?? 0, peak);
        _gradientsAtPartStart = _gradientBytes();
        _watcher.Reset();
    }

    public void AfterBackward() => PartCompleted();

    /// <summary>
    /// The gradients moved outside a part (folded into the fp32 masters after a micro-batch's backward): the next part
    /// starts from the count as it is now, so the move is not taken for activations. For a step measured as one window
    /// (<see cref="BeforeForward"/> once, then the parts of every micro-batch, as a pipeline schedule interleaves
    /// them); call it right after a part completed, since it starts a new peak window.
    /// </summary>
    public void GradientsMoved()
    {
        _gradientsAtPartStart = _gradientBytes();
        _watcher?.Reset();
    }

    public void Dispose() => _watcher?.Dispose();
}
