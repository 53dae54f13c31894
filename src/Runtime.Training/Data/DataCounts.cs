namespace Runtime.Training.Data;

/// <summary>
/// What became of a data file's rows: <see cref="Rows"/> non-blank lines gave <see cref="Samples"/> samples of
/// <see cref="Tokens"/> tokens, <see cref="Truncated"/> of them (kept samples only) cut to max-seq-length, and the rest were skipped, counted
/// by reason (<see cref="SkipReason.NoLearnedTokens"/> always; the others only with skip-invalid, else they fail).
/// </summary>
public sealed record DataCounts(long Rows, long Samples, long Tokens, long Truncated, IReadOnlyDictionary<SkipReason, long> Skipped)
{
    /// <summary>From skip counts indexed by <see cref="SkipReason"/> value (zeros left out).</summary>
    public static DataCounts From(long rows, long samples, long tokens, long truncated, IReadOnlyList<long> skippedByReason) =>
        new(rows, samples, tokens, truncated,
            SkipReasons.All.Where(r => (int)r < skippedByReason.Count && skippedByReason[(int)r] > 0)
                .ToDictionary(r => r, r => skippedByReason[(int)r]));

    public long TotalSkipped => Skipped.Values.Sum();

    public long SkippedFor(SkipReason reason) => Skipped.TryGetValue(reason, out var n) ? n : 0;

    /// <summary>One line for a log, e.g. "1200 rows -> 1190 samples, 301,224 tokens, 12 truncated; skipped 10 (malformed JSON 4, no learned tokens after truncation 6)".</summary>
    public string Summary()
    {
        var text = $"{Rows} rows -> {Samples} samples, {Tokens:N0} tokens, {Truncated} truncated";
        if (TotalSkipped == 0) return text;
        var reasons = SkipReasons.All.Where(r => SkippedFor(r) > 0).Select(r => $"{SkipReasons.Describe(r)} {SkippedFor(r)}");
        return $"{text}; skipped {TotalSkipped} ({string.Join(", ", reasons)})";
    }

    public override string ToString() => Summary();
}
