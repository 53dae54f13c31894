namespace Runtime.Training.Data;

/// <summary>
/// Which samples share which packed row. First-fit in sample (cache) order: each sample goes into the first row, lowest
/// index first, that still has room for all of it; a new row is opened only when none has. Samples are never split
/// across rows (a sample is at most max-seq-length long, so it always fits an empty row), and within a row they keep
/// cache order. Like TRL, packing happens once over the whole dataset, before any shuffling: the sampler then shuffles
/// rows. The plan is a pure function of the sample lengths and the row length, cheap enough (O(N log N), a segment
/// tree over the rows' free space) to recompute from the cache at every start instead of storing it.
/// </summary>
public sealed class PackingPlan
{
    readonly int[] _rowStarts;   // row r holds _samples[_rowStarts[r] .. _rowStarts[r + 1])
    readonly int[] _samples;
    readonly int[] _rowTokens;

    PackingPlan(int rowLength, int[] rowStarts, int[] samples, int[] rowTokens)
    {
        RowLength = rowLength;
        _rowStarts = rowStarts;
        _samples = samples;
        _rowTokens = rowTokens;
    }

    public int RowLength { get; }

    public int RowCount => _rowTokens.Length;

    public int SampleCount => _samples.Length;

    public ReadOnlySpan<int> SamplesIn(int row) => _samples.AsSpan(_rowStarts[row], _rowStarts[row + 1] - _rowStarts[row]);

    /// <summary>Tokens of real samples in a row; the rest of its <see cref="RowLength"/> is padding.</summary>
    public int TokensIn(int row) => _rowTokens[row];

    /// <summary>Share of the rows' tokens that are not padding.</summary>
    public double Fill => (double)_rowTokens.Sum(t => (long)t) / ((long)RowCount * RowLength);

    public static PackingPlan FirstFit(ISampleSource source) =>
        FirstFit(Enumerable.Range(0, source.Count).Select(source.Length).ToArray(), source.MaxSeqLength);

    public static PackingPlan FirstFit(IReadOnlyList<int> lengths, int rowLength)
    {
        if (rowLength < 1) throw new ArgumentOutOfRangeException(nameof(rowLength), rowLength, "rows need a positive length");
        int count = lengths.Count;
        int leaves = 1;
        while (leaves < Math.Max(count, 1)) leaves *= 2;
        // free[leaves + r] is row r's free space (unopened rows are empty); an inner node holds its children's maximum.
        var free = new int[2 * leaves];
        Array.Fill(free, rowLength);
        var rowOf = new int[count];
        int rows = 0;
        for (int s = 0; s < count; s++)
        {
            int length = lengths[s];
            if (length < 1 || length > rowLength)
                throw new ArgumentException($"sample {s} has {length} tokens; packed rows hold 1..{rowLength}", nameof(lengths));
            int node = 1;
            while (node < leaves) node = free[2 * node] >= length ? 2 * node : 2 * node + 1;
            int row = node - leaves;
            rowOf[s] = row;
            rows = Math.Max(rows, row + 1);
            free[node] -= length;
            for (node /= 2; node >= 1; node /= 2) free[node] = Math.Max(free[2 * node], free[2 * node + 1]);
        }

        var rowStarts = new int[rows + 1];
        var rowTokens = new int[rows];
        for (int s = 0; s < count; s++)
        {
            rowStarts[rowOf[s] + 1]++;
            rowTokens[rowOf[s]] += lengths[s];
        }
        for (int r = 0; r < rows; r++) rowStarts[r + 1] += rowStarts[r];
        var next = rowStarts[..^1].ToArray();
        var samples = new int[count];
        for (int s = 0; s < count; s++) samples[next[rowOf[s]]++] = s; // ascending s: cache order within each row
        return new PackingPlan(rowLength, rowStarts, samples, rowTokens);
    }
}
