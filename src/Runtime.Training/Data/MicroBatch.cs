using static TorchSharp.torch;

namespace Runtime.Training.Data;

/// <summary>
/// A collated micro-batch, all tensors int64 [rows, width] on the CPU:
/// <list type="bullet">
/// <item><see cref="InputIds"/>; padding is &lt;|finetune_right_pad_id|&gt; (or the collator's pad id).</item>
/// <item><see cref="Labels"/>: Hugging Face's unshifted labels, -100 where nothing is learned (prompts, padding, the
/// first token of every sample).</item>
/// <item><see cref="Positions"/>: from 0 at each sample's start (packed rows restart per sample; padding counts from 0
/// again as a segment of its own).</item>
/// <item><see cref="SegmentIds"/> (packed rows only, else null): the index of the sample within its row, from 0;
/// padding is <see cref="PaddingSegment"/>. The model lets token i attend to token j when j &lt;= i and both have the
/// same segment id: block-diagonal causal attention. Padding forms its own block so that no attention row is empty.
/// Unpacked rows need no mask beyond causality: their padding is at the end, where causal attention never looks back
/// from a real token, and its labels are -100.</item>
/// </list>
/// <see cref="LabelledTokens"/> is the number of labels other than -100, known before the forward pass.
/// </summary>
public sealed class MicroBatch : IDisposable
{
    public const long PaddingSegment = -1;

    public MicroBatch(int index, int[] examples, Tensor inputIds, Tensor labels, Tensor positions, Tensor? segmentIds, long labelledTokens)
    {
        Index = index;
        Examples = examples;
        InputIds = inputIds;
        Labels = labels;
        Positions = positions;
        SegmentIds = segmentIds;
        LabelledTokens = labelledTokens;
    }

    /// <summary>The global micro-batch index j within its step; -1 when collated outside a step.</summary>
    public int Index { get; }

    public int[] Examples { get; }

    public Tensor InputIds { get; }

    public Tensor Labels { get; }

    public Tensor Positions { get; }

    public Tensor? SegmentIds { get; }

    public long LabelledTokens { get; }

    public int Rows => Examples.Length;

    public int Width => (int)InputIds.shape[1];

    public void Dispose()
    {
        InputIds.Dispose();
        Labels.Dispose();
        Positions.Dispose();
        SegmentIds?.Dispose();
    }
}
