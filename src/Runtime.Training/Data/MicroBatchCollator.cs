using Runtime.Model.Tokenization;
using static TorchSharp.torch;

namespace Runtime.Training.Data;

/// <summary>
/// Lays a micro-batch of examples out as tensors (<see cref="MicroBatch"/>). Packed rows are max-seq-length wide.
/// Unpacked examples are padded on the right to the longest example of the micro-batch, rounded up to a multiple of
/// <see cref="PadToMultipleOf"/> (kernel-friendly shapes) but never past max-seq-length. Pad id and -100 labels are
/// fixed, so the same examples always give the same tensors.
/// </summary>
public sealed class MicroBatchCollator
{
    readonly IExampleSet _examples;

    public MicroBatchCollator(IExampleSet examples, int padId = Llama3SpecialTokens.FinetuneRightPad, int padToMultipleOf = 8)
    {
        if (padToMultipleOf < 1) throw new ArgumentOutOfRangeException(nameof(padToMultipleOf), padToMultipleOf, "must be at least 1");
        _examples = examples;
        PadId = padId;
        PadToMultipleOf = padToMultipleOf;
    }

    public int PadId { get; }

    public int PadToMultipleOf { get; }

    /// <summary>The width the micro-batch's tensors get.</summary>
    public int Width(IReadOnlyList<int> examples)
    {
        if (_examples.IsPacked) return _examples.MaxLength;
        int longest = 0;
        foreach (var e in examples) longest = Math.Max(longest, _examples.Length(e));
        int rounded = (longest + PadToMultipleOf - 1) / PadToMultipleOf * PadToMultipleOf;
        return Math.Max(longest, Math.Min(rounded, _examples.MaxLength));
    }

    /// <summary>Labelled tokens of some examples, e.g. of a whole step (every replica's micro-batches): the loss normaliser.</summary>
    public long LabelledTokens(IEnumerable<int> examples) => examples.Sum(e => _examples.LabelledTokens(e));

    public long LabelledTokens(StepPlan step) => LabelledTokens(step.Examples);

    public MicroBatch Collate(GlobalMicroBatch microBatch) => Collate(microBatch.Examples, microBatch.Index);

    public MicroBatch Collate(IReadOnlyList<int> examples, int index = -1)
    {
        if (examples.Count == 0) throw new ArgumentException("a micro-batch needs at least one example", nameof(examples));
        int rows = examples.Count, width = Width(examples);
        var ids = new long[rows * width];
        var labels = new long[rows * width];
        var positions = new long[rows * width];
        var segments = new long[rows * width];
        long labelled = 0;
        for (int r = 0; r < rows; r++)
        {
            int example = examples[r], length = _examples.Length(example);
            var row = new Range(r * width, (r + 1) * width);
            _examples.Write(example, ids.AsSpan(row), labels.AsSpan(row), positions.AsSpan(row), segments.AsSpan(row));
            for (int t = length; t < width; t++)
            {
                int at = r * width + t;
                ids[at] = PadId;
                labels[at] = ChatTokens.IgnoreIndex;
                positions[at] = t - length;
                segments[at] = MicroBatch.PaddingSegment;
            }
            labelled += _examples.LabelledTokens(example);
        }

        using var scope = NewDisposeScope();
        var shape = new long[] { rows, width };
        var idsTensor = tensor(ids, shape);
        var labelsTensor = tensor(labels, shape);
        var positionsTensor = tensor(positions, shape);
        var segmentsTensor = _examples.IsPacked ? tensor(segments, shape) : null;
        return new MicroBatch(index, examples.ToArray(),
            idsTensor.MoveToOuterDisposeScope(), labelsTensor.MoveToOuterDisposeScope(), positionsTensor.MoveToOuterDisposeScope(),
            segmentsTensor?.MoveToOuterDisposeScope(), labelled);
    }
}
