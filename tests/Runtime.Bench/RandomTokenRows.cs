using Runtime.Training.Data;
using Runtime.Training.Engine;

namespace Runtime.Bench;

/// <summary>
/// Pre-tokenized rows of exactly <c>length</c> random ids, every token a target: the step's work depends on the shape,
/// not on which ids, and full rows leave no padding to argue about (every input token is a trained token).
/// </summary>
internal sealed class RandomTokenRows : ISampleSource
{
    readonly int[][] _ids;
    readonly byte[] _targets;

    public RandomTokenRows(int rows, int length, int vocabulary, int seed)
    {
        var random = new Random(seed);
        // Id 0 is left out: it pads, though full rows never need padding.
        _ids = Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, length).Select(_ => 1 + random.Next(vocabulary - 1)).ToArray()).ToArray();
        _targets = Enumerable.Repeat((byte)1, length).ToArray();
        MaxSeqLength = length;
    }

    public int Count => _ids.Length;

    public int MaxSeqLength { get; }

    public int Length(int sample) => _ids[sample].Length;

    public ReadOnlySpan<int> Ids(int sample) => _ids[sample];

    public ReadOnlySpan<byte> Targets(int sample) => _targets;

    public int TargetCount(int sample) => _targets.Length;

    /// <summary>The rows as a training loop's data: shuffled, one row per example, no padding.</summary>
    public TrainingBatches Batches() => TrainingBatches.InMemory(new SampleExamples(this), new SamplerOptions(7), padId: 0, padToMultipleOf: 1);
}
