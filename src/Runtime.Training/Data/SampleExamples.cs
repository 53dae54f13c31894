using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>Without packing: example i is sample i.</summary>
public sealed class SampleExamples : IExampleSet
{
    readonly ISampleSource _source;

    public SampleExamples(ISampleSource source) => _source = source;

    public int Count => _source.Count;

    public bool IsPacked => false;

    public int MaxLength => _source.MaxSeqLength;

    public int Length(int example) => _source.Length(example);

    public long LabelledTokens(int example) => LabelledTokensOf(_source, example);

    public void Write(int example, Span<long> ids, Span<long> labels, Span<long> positions, Span<long> segments) =>
        WriteSample(_source, example, 0, ids, labels, positions, segments);

    /// <summary>A sample's targets, less its first token, which is never a label (see <see cref="EncodedSample"/>).</summary>
    internal static long LabelledTokensOf(ISampleSource source, int sample) =>
        source.TargetCount(sample) - (source.Targets(sample)[0] != 0 ? 1 : 0);

    internal static void WriteSample(ISampleSource source, int sample, int segment,
        Span<long> ids, Span<long> labels, Span<long> positions, Span<long> segments)
    {
        var sampleIds = source.Ids(sample);
        var targets = source.Targets(sample);
        for (int i = 0; i < sampleIds.Length; i++)
        {
            ids[i] = sampleIds[i];
            labels[i] = i > 0 && targets[i] != 0 ? sampleIds[i] : ChatTokens.IgnoreIndex;
            positions[i] = i;
            segments[i] = segment;
        }
    }
}
