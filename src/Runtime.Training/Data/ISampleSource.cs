namespace Runtime.Training.Data;

/// <summary>
/// Tokenized samples, indexed 0..Count-1: ids and, per token, whether it is a training target (1) or not (0). No sample
/// is longer than <see cref="MaxSeqLength"/>. <see cref="TokenCache"/> is the one that training uses; the spans it
/// returns stay valid while it is open.
/// </summary>
public interface ISampleSource
{
    int Count { get; }

    int MaxSeqLength { get; }

    int Length(int sample);

    ReadOnlySpan<int> Ids(int sample);

    ReadOnlySpan<byte> Targets(int sample);

    /// <summary>How many of the sample's tokens are targets (known without reading its tokens).</summary>
    int TargetCount(int sample);
}
