using Runtime.Model.Llama;
using static TorchSharp.torch;

namespace Runtime.Training.Engine;

/// <summary>
/// What a stage keeps of one micro-batch between its forward and its backward. Every tensor here is outside any
/// dispose scope and freed by <see cref="Dispose"/>, which the stage calls when the backward is done (or the
/// micro-batch is discarded), so nothing outlives its micro-batch.
/// </summary>
internal sealed class InFlightMicroBatch(Tensor positions, Tensor? segmentIds, AttentionContext context) : IDisposable
{
    /// <summary>The stage's own handles on the caller's positions and segment ids, which the context refers to.</summary>
    public Tensor Positions { get; } = positions;

    public Tensor? SegmentIds { get; } = segmentIds;

    /// <summary>Rotary tables, mask and randomness: the recompute must see exactly what the forward saw.</summary>
    public AttentionContext Context { get; } = context;

    /// <summary>
    /// Where the backward starts: the scaled loss on the last stage, else the output hidden states. Without recompute
    /// it carries the autograd graph of the whole stage; with recompute only the graph of the head (last stage).
    /// </summary>
    public Tensor? Root { get; set; }

    /// <summary>Shape of the output sent on: the incoming gradient must match it.</summary>
    public long[]? OutputShape { get; set; }

    /// <summary>Non-first stage without recompute: the received hidden states as a leaf that requires grad.</summary>
    public Tensor? InputLeaf { get; set; }

    /// <summary>Recompute: the input of each layer of the stage (no graph), in layer order.</summary>
    public Tensor[]? LayerInputs { get; set; }

    /// <summary>Recompute, first stage: the embedding output with its (tiny) graph, when the table is trainable.</summary>
    public Tensor? EmbeddingRoot { get; set; }

    /// <summary>Recompute, last stage: the last layer's output as a leaf, from which the head's graph starts.</summary>
    public Tensor? HeadLeaf { get; set; }

    public void Dispose()
    {
        Root?.Dispose();
        InputLeaf?.Dispose();
        EmbeddingRoot?.Dispose();
        HeadLeaf?.Dispose();
        if (LayerInputs is not null)
            foreach (var t in LayerInputs) t?.Dispose();
        Context.Dispose();
        Positions.Dispose();
        SegmentIds?.Dispose();
    }
}
