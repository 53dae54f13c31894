using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

/// <summary>Samples held in arrays, for packing, sampling and collation tests that need no tokenizer or file.</summary>
public sealed class InMemorySamples : ISampleSource
{
    readonly int[][] _ids;
    readonly byte[][] _targets;

    public InMemorySamples(int maxSeqLength, params (int[] Ids, byte[] Targets)[] samples)
    {
        MaxSeqLength = maxSeqLength;
        _ids = samples.Select(s => s.Ids).ToArray();
        _targets = samples.Select(s => s.Targets).ToArray();
    }

    /// <summary>
    /// Samples of the given lengths; sample s has ids 1000 s + i (so every token names its sample and place) and every
    /// token is marked a target, the first included, so that tests see the collator itself ignore each sample's first
    /// label.
    /// </summary>
    public static InMemorySamples OfLengths(int maxSeqLength, params int[] lengths) =>
        new(maxSeqLength, lengths.Select((length, s) =>
            (Enumerable.Range(0, length).Select(i => 1000 * s + i).ToArray(),
             Enumerable.Repeat((byte)1, length).ToArray())).ToArray());

    public int Count => _ids.Length;

    public int MaxSeqLength { get; }

    public int Length(int sample) => _ids[sample].Length;

    public ReadOnlySpan<int> Ids(int sample) => _ids[sample];

    public ReadOnlySpan<byte> Targets(int sample) => _targets[sample];

    public int TargetCount(int sample) => _targets[sample].Count(t => t != 0);
}
