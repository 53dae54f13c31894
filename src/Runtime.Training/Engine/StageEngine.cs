using Runtime.Model.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Training.Engine;

/// <summary>
/// Forward and backward of one model slice (a pipeline stage, or the whole model), one micro-batch at a time, for a
/// worker that owns exactly this slice. It trains whatever parameters of the slice require grad (all of them for full
/// fine-tuning, only the adapters once a LoRA injector has frozen the base) and lets their gradients accumulate in
/// <c>.grad</c> across micro-batches until the optimizer step.
/// <para>
/// Pipeline protocol per micro-batch: <see cref="Forward"/> takes token ids (first stage) or the hidden states received
/// from the previous stage, and returns the hidden states to send on (or, on the last stage, the loss sum and label
/// count). <see cref="Backward"/> takes the gradient of those hidden states received from the next stage (null on the
/// last stage, whose backward starts from its own loss) and returns the gradient of the stage's input to send back
/// (null on the first stage). Any number of micro-batches may be between their forward and backward (1F1B keeps up to
/// the pipeline depth in flight on the first stage); each keeps its own saved state, freed at its backward.
/// </para>
/// <para>
/// With <see cref="Recompute"/> (gradient checkpointing) the forward runs the decoder layers without autograd and keeps
/// only each layer's input; the backward recomputes the layers one at a time, last first, with the same attention
/// context (and so the same dropout draws), feeding each the gradient of its output. The embedding and the head keep
/// their graphs as Hugging Face's gradient checkpointing does (the head's graph lives only until the micro-batch's
/// backward, which on the last stage follows its forward at once). The gradients are the same as without recompute.
/// </para>
/// Not thread-safe: a worker drives its stage from one thread. The engine does not own the slice.
/// </summary>
public sealed class StageEngine : IDisposable
{
    readonly Dictionary<long, InFlightMicroBatch> _inFlight = [];
    readonly LlamaDecoderLayer[] _layers;
    bool _disposed;

    public StageEngine(LlamaSlice slice, bool recompute = false)
    {
        ArgumentNullException.ThrowIfNull(slice);
        Slice = slice;
        Recompute = recompute;
        _layers = slice.Model.Layers.ToArray();
        TrainableParameters = slice.named_parameters().Where(p => p.parameter.requires_grad)
            .Select(p => (p.name, (Tensor)p.parameter)).ToList();
    }

    public LlamaSlice Slice { get; }

    /// <summary>Gradient checkpointing: recompute each layer during the backward instead of keeping its activations.</summary>
    public bool Recompute { get; }

    /// <summary>
    /// The parameters this stage trains (those that require grad when the engine is built: inject adapters and freeze
    /// the base first), by canonical full-model name.
    /// </summary>
    public IReadOnlyList<(string Name, Tensor Parameter)> TrainableParameters { get; }

    public bool IsFirstStage => Slice.Spec.HasEmbedding;

    public bool IsLastStage => Slice.Spec.HasHead;

    /// <summary>
    /// Called on the worker's thread after each part of a backward: the head's (loss, final norm, LM head), each
    /// recomputed layer's, the embedding's; without recompute, once after the whole graph's. Memory measurement uses
    /// it to tell the gradients that existed before a part from the bytes the part held (<see cref="Metrics.ActivationMeter"/>).
    /// </summary>
    public Action? BackwardPartCompleted { get; set; }

    /// <summary>Micro-batches whose forward ran and whose backward has not.</summary>
    public IReadOnlyCollection<long> InFlight => _inFlight.Keys;

    /// <summary>
    /// The forward of micro-batch <paramref name="microBatchId"/> (any id unique among those in flight, e.g. the
    /// global micro-batch index). <paramref name="input"/>: token ids [batch, seq] int64 on the first stage, else
    /// hidden states [batch, seq, hidden] in the model dtype. <paramref name="labels"/>: the unshifted labels, on the
    /// last stage only. <paramref name="lossScale"/> seeds the last stage's backward: 1 / the labelled tokens of the
    /// whole optimizer step (all micro-batches, all replicas). The stage keeps its own handles on what it needs;
    /// the caller still owns the tensors it passed.
    /// </summary>
    public StageForward Forward(long microBatchId, Tensor input, Tensor positions, Tensor? segmentIds = null,
        Tensor? labels = null, StepRandomness? randomness = null, double lossScale = 1.0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_inFlight.ContainsKey(microBatchId))
            throw new InvalidOperationException($"stage {Slice.Spec}: micro-batch {microBatchId} is already in flight (forward ran, backward did not)");
        CheckInputs(microBatchId, input, positions, labels, lossScale);

        using var scope = NewDisposeScope();
        using var gradMode = enable_grad();
        // The context refers to positions and segment ids: give it handles of our own, which live as long as it does.
        var ownPositions = positions.alias().DetachFromDisposeScope();
        var ownSegments = segmentIds?.alias().DetachFromDisposeScope();
        AttentionContext context;
        try
        {
            context = Slice.CreateContext(ownPositions, ownSegments, cache: null, randomness);
        }
        catch
        {
            ownPositions.Dispose();
            ownSegments?.Dispose();
            throw;
        }
        var saved = new InFlightMicroBatch(ownPositions, ownSegments, context);
        try
        {
            var result = Recompute ? ForwardKeepingLayerInputs(saved, input, labels, lossScale) : ForwardKeepingGraph(saved, input, labels, lossScale);
            _inFlight.Add(microBatchId, saved);
            return result.Output is null ? result : StageForward.Hidden(result.Output.MoveToOuterDisposeScope());
        }
        catch
        {
            saved.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The backward of micro-batch <paramref name="microBatchId"/>: <paramref name="gradOutput"/> is the gradient of
    /// the hidden states this stage sent on (null on the last stage). Adds the parameters' gradients to their
    /// <c>.grad</c> and returns the gradient of the stage's input hidden states, which the caller owns (null on the
    /// first stage). Frees everything the micro-batch kept.
    /// </summary>
    public Tensor? Backward(long microBatchId, Tensor? gradOutput = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_inFlight.TryGetValue(microBatchId, out var saved))
            throw new InvalidOperationException(
                $"stage {Slice.Spec}: micro-batch {microBatchId} is not in flight (in flight: {(_inFlight.Count == 0 ? "none" : string.Join(", ", _inFlight.Keys))})");
        CheckGradOutput(microBatchId, saved, gradOutput);
        _inFlight.Remove(microBatchId);

        using (saved)
        {
            using var scope = NewDisposeScope();
            using var gradMode = enable_grad();
            var inputGrad = Recompute ? BackwardRecomputing(saved, gradOutput) : BackwardThroughGraph(saved, gradOutput);
            return inputGrad?.MoveToOuterDisposeScope();
        }
    }

    /// <summary>Frees a micro-batch's saved state without a backward (an aborted step).</summary>
    public bool Discard(long microBatchId)
    {
        if (!_inFlight.Remove(microBatchId, out var saved)) return false;
        saved.Dispose();
        return true;
    }

    /// <summary>Frees every micro-batch in flight (an aborted step, or before loading a checkpoint).</summary>
    public void DiscardAll()
    {
        foreach (var saved in _inFlight.Values) saved.Dispose();
        _inFlight.Clear();
    }

    StageForward ForwardKeepingGraph(InFlightMicroBatch saved, Tensor input, Tensor? labels, double lossScale)
    {
        Tensor stageInput = input;
        if (!IsFirstStage)
        {
            // A leaf of our own that requires grad: its .grad after the backward is what goes back to the previous stage.
            saved.InputLeaf = input.detach().requires_grad_(true).DetachFromDisposeScope();
            stageInput = saved.InputLeaf;
        }
        var output = Slice.call(stageInput, saved.Context);
        if (IsLastStage) return Loss(saved, output, labels!, lossScale);
        saved.Root = output.DetachFromDisposeScope();
        saved.OutputShape = output.shape;
        return StageForward.Hidden(output.detach());
    }

    StageForward ForwardKeepingLayerInputs(InFlightMicroBatch saved, Tensor input, Tensor? labels, double lossScale)
    {
        Tensor hidden;
        if (IsFirstStage)
        {
            var embed = Slice.Model.EmbedTokens!;
            var embedded = embed.call(input);
            if (embedded.requires_grad) saved.EmbeddingRoot = embedded.alias().DetachFromDisposeScope();
            hidden = embedded.detach();
        }
        else
        {
            hidden = input.detach();
        }

        saved.LayerInputs = new Tensor[_layers.Length];
        using (no_grad())
        {
            for (int i = 0; i < _layers.Length; i++)
            {
                saved.LayerInputs[i] = hidden.alias().DetachFromDisposeScope();
                hidden = _layers[i].call(hidden, saved.Context);
            }
        }

        if (!IsLastStage)
        {
            saved.OutputShape = hidden.shape;
            return StageForward.Hidden(hidden);
        }
        saved.HeadLeaf = hidden.detach().requires_grad_(true).DetachFromDisposeScope();
        return Loss(saved, Head(saved.HeadLeaf), labels!, lossScale);
    }

    /// <summary>
    /// The last stage's tail exactly as <see cref="LlamaSlice"/> runs it: final norm, LM head, logits in fp32 (the rank's
    /// vocabulary columns when the slice is vocabulary-parallel).
    /// </summary>
    Tensor Head(Tensor hidden) => Slice.HeadLogits(Slice.Model.Norm!.call(hidden));

    /// <summary>
    /// The loss of the slice's logits: the vocab-parallel cross entropy (one all-reduce) when the slice holds only its
    /// vocabulary columns, else the plain one; either way every tensor-parallel rank gets the same sum.
    /// </summary>
    StageForward Loss(InFlightMicroBatch saved, Tensor logits, Tensor labels, double lossScale)
    {
        var sum = CausalLmLoss.SumNll(logits, labels, Slice.VocabularyParallelGroup);
        // Multiplying by fp32(1/N) seeds the backward with the same value as HF's division of the loss by N.
        saved.Root = sum.mul(lossScale).DetachFromDisposeScope();
        return StageForward.Loss(sum.ToDouble(), CausalLmLoss.CountLabelled(labels));
    }

    Tensor? BackwardThroughGraph(InFlightMicroBatch saved, Tensor? gradOutput)
    {
        RunBackward(saved.Root!, gradOutput);
        BackwardPartCompleted?.Invoke();
        return saved.InputLeaf is null ? null : InputGradient(saved.InputLeaf);
    }

    Tensor? BackwardRecomputing(InFlightMicroBatch saved, Tensor? gradOutput)
    {
        Tensor? grad = gradOutput;
        if (IsLastStage)
        {
            RunBackward(saved.Root!, null);
            BackwardPartCompleted?.Invoke();
            grad = InputGradient(saved.HeadLeaf!);
        }

        var layerInputs = saved.LayerInputs!;
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            using var layerScope = NewDisposeScope();
            var x = layerInputs[i].detach().requires_grad_(true);
            var y = _layers[i].call(x, saved.Context);
            RunBackward(y, grad);
            BackwardPartCompleted?.Invoke();
            var next = InputGradient(x).MoveToOuterDisposeScope();
            if (!ReferenceEquals(grad, gradOutput)) grad?.Dispose();
            grad = next;
            // Each layer's input is needed once: free it now rather than at the end of the micro-batch.
            layerInputs[i].Dispose();
            layerInputs[i] = null!;
        }

        if (IsFirstStage)
        {
            if (saved.EmbeddingRoot is not null)
            {
                RunBackward(saved.EmbeddingRoot, grad);
                BackwardPartCompleted?.Invoke();
            }
            return null;
        }
        // A stage without layers hands the incoming gradient straight back; give the caller a handle of its own.
        return ReferenceEquals(grad, gradOutput) ? grad!.alias() : grad;
    }

    /// <summary>Backward from <paramref name="root"/>: a scalar loss (no gradient) or a tensor with its gradient.</summary>
    static void RunBackward(Tensor root, Tensor? gradient)
    {
        // A root that needs no gradient means nothing before it is trained (e.g. a frozen first stage): nothing to do.
        if (!root.requires_grad) return;
        if (gradient is null) root.backward();
        else autograd.backward([root], [gradient]);
    }

    static Tensor InputGradient(Tensor leaf) => leaf.grad ?? zeros_like(leaf);

    void CheckInputs(long id, Tensor input, Tensor positions, Tensor? labels, double lossScale)
    {
        string where = $"stage {Slice.Spec}, micro-batch {id}";
        if (IsFirstStage ? input.dim() != 2 || input.dtype != ScalarType.Int64
                : input.dim() != 3 || input.shape[2] != Slice.Config.HiddenSize || input.dtype != Slice.Options.DType)
            throw new ArgumentException(IsFirstStage
                ? $"{where}: takes token ids int64 [batch, seq]; got {input.dtype} {Shape(input.shape)}"
                : $"{where}: takes hidden states {Slice.Options.DType} [batch, seq, {Slice.Config.HiddenSize}]; got {input.dtype} {Shape(input.shape)}");
        if (positions.dim() != 2 || positions.shape[0] != input.shape[0] || positions.shape[1] != input.shape[1])
            throw new ArgumentException($"{where}: positions {Shape(positions.shape)} do not match the input {Shape(input.shape)}");
        if (IsLastStage)
        {
            if (labels is null) throw new ArgumentException($"{where}: the last stage needs the labels");
            if (!labels.shape.SequenceEqual(positions.shape))
                throw new ArgumentException($"{where}: labels {Shape(labels.shape)} do not match the input {Shape(positions.shape)}");
            if (!(lossScale > 0) || double.IsInfinity(lossScale))
                throw new ArgumentOutOfRangeException(nameof(lossScale), lossScale,
                    $"{where}: the loss scale (1 / labelled tokens of the step) must be finite and > 0");
        }
    }

    void CheckGradOutput(long id, InFlightMicroBatch saved, Tensor? gradOutput)
    {
        string where = $"stage {Slice.Spec}, micro-batch {id}";
        if (IsLastStage)
        {
            if (gradOutput is not null)
                throw new ArgumentException($"{where}: the last stage starts its backward from its own loss; pass no gradient");
            return;
        }
        if (gradOutput is null)
            throw new ArgumentException($"{where}: needs the gradient of its output {Shape(saved.OutputShape!)} from the next stage");
        if (!gradOutput.shape.SequenceEqual(saved.OutputShape!))
            throw new ArgumentException($"{where}: the output gradient is {Shape(gradOutput.shape)}, the output was {Shape(saved.OutputShape!)}");
    }

    static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DiscardAll();
    }
}
