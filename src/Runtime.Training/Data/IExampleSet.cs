namespace Runtime.Training.Data;

/// <summary>
/// What the sampler draws and the collator lays out: samples one by one (<see cref="SampleExamples"/>) or packed rows
/// (<see cref="PackedExamples"/>). <see cref="LabelledTokens"/> equals the number of labels other than -100 that
/// <see cref="Write"/> produces, so a step's loss normaliser is known before any forward pass.
/// </summary>
public interface IExampleSet
{
    int Count { get; }

    bool IsPacked { get; }

    /// <summary>The longest an example can be (max-seq-length); packed rows are always this long.</summary>
    int MaxLength { get; }

    /// <summary>Tokens of the example before any padding.</summary>
    int Length(int example);

    long LabelledTokens(int example);

    /// <summary>
    /// Writes the example's first <see cref="Length"/> tokens into the spans (each at least that long): ids, labels
    /// (-100 where not learned, and at the first token of every sample), positions (from 0 at each sample's start) and
    /// segment ids (the sample's index within the example, from 0). The caller pads the rest.
    /// </summary>
    void Write(int example, Span<long> ids, Span<long> labels, Span<long> positions, Span<long> segments);
}
