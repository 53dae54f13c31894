namespace Runtime.Training.Data;

/// <summary>With packing: example r is row r of a <see cref="PackingPlan"/>, its samples back to back.</summary>
public sealed class PackedExamples : IExampleSet
{
    readonly ISampleSource _source;
    readonly long[] _labelled;

    public PackedExamples(ISampleSource source, PackingPlan plan)
    {
        if (plan.SampleCount != source.Count || plan.RowLength != source.MaxSeqLength)
            throw new ArgumentException($"the plan packs {plan.SampleCount} samples into rows of {plan.RowLength}; the source has {source.Count} samples of at most {source.MaxSeqLength}", nameof(plan));
        _source = source;
        Plan = plan;
        _labelled = new long[plan.RowCount];
        for (int r = 0; r < plan.RowCount; r++)
            foreach (var s in plan.SamplesIn(r)) _labelled[r] += SampleExamples.LabelledTokensOf(source, s);
    }

    public PackedExamples(ISampleSource source) : this(source, PackingPlan.FirstFit(source))
    {
    }

    public PackingPlan Plan { get; }

    public int Count => Plan.RowCount;

    public bool IsPacked => true;

    public int MaxLength => Plan.RowLength;

    public int Length(int example) => Plan.TokensIn(example);

    public long LabelledTokens(int example) => _labelled[example];

    public void Write(int example, Span<long> ids, Span<long> labels, Span<long> positions, Span<long> segments)
    {
        int at = 0, segment = 0;
        foreach (var sample in Plan.SamplesIn(example))
        {
            int length = _source.Length(sample);
            SampleExamples.WriteSample(_source, sample, segment++,
                ids.Slice(at, length), labels.Slice(at, length), positions.Slice(at, length), segments.Slice(at, length));
            at += length;
        }
    }
}
