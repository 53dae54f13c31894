using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

public sealed class PackingTests
{
    const long Pad = 128004, Ignore = -100;

    static int[][] Rows(PackingPlan plan) => Enumerable.Range(0, plan.RowCount).Select(r => plan.SamplesIn(r).ToArray()).ToArray();

    [Fact]
    public void First_fit_in_cache_order_worked_by_hand()
    {
        // Rows of 8. s0(5) opens row 0 (3 left); s1(3) fills it; s2(4) opens row 1 (4 left); s3(2) joins it (2 left);
        // s4(6) opens row 2 (2 left); s5(1) goes to the first row with room, row 1 (1 left); s6(2) to row 2 (0 left).
        var plan = PackingPlan.FirstFit([5, 3, 4, 2, 6, 1, 2], 8);
        Assert.Equal([[0, 1], [2, 3, 5], [4, 6]], Rows(plan));
        Assert.Equal([8, 7, 8], Enumerable.Range(0, 3).Select(plan.TokensIn));
        Assert.Equal(23.0 / 24, plan.Fill, 12);
    }

    /// <summary>The obvious quadratic first-fit: scan the open rows from the first.</summary>
    static List<List<int>> NaiveFirstFit(int[] lengths, int rowLength)
    {
        var rows = new List<List<int>>();
        var free = new List<int>();
        for (int s = 0; s < lengths.Length; s++)
        {
            int row = free.FindIndex(f => f >= lengths[s]);
            if (row < 0)
            {
                rows.Add([]);
                free.Add(rowLength);
                row = rows.Count - 1;
            }
            rows[row].Add(s);
            free[row] -= lengths[s];
        }
        return rows;
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(2, 100)]
    [InlineData(3, 13)]
    public void First_fit_matches_a_naive_first_fit_and_places_every_sample_once(int seed, int rowLength)
    {
        var random = new Random(seed);
        var lengths = Enumerable.Range(0, 700).Select(_ => random.Next(1, rowLength + 1)).ToArray();
        var plan = PackingPlan.FirstFit(lengths, rowLength);
        var expected = NaiveFirstFit(lengths, rowLength);
        Assert.Equal(expected.Select(r => r.ToArray()).ToArray(), Rows(plan));
        Assert.Equal(Enumerable.Range(0, lengths.Length), Rows(plan).SelectMany(r => r).Order());
        for (int r = 0; r < plan.RowCount; r++)
        {
            Assert.True(plan.TokensIn(r) <= rowLength);
            Assert.Equal(plan.SamplesIn(r).ToArray().Sum(s => lengths[s]), plan.TokensIn(r));
        }
    }

    [Fact]
    public void A_sample_longer_than_a_row_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => PackingPlan.FirstFit([3, 9], 8));
        Assert.Contains("sample 1 has 9 tokens", error.Message);
    }

    [Fact]
    public void Packed_rows_restart_positions_mark_segments_ignore_first_labels_and_pad_the_tail()
    {
        // Samples of 5, 3, 4 tokens, rows of 10: row 0 = s0 + s1 (8 tokens), row 1 = s2 (4 tokens).
        var source = InMemorySamples.OfLengths(10, 5, 3, 4);
        var examples = new PackedExamples(source);
        Assert.Equal(2, examples.Count);
        var collator = new MicroBatchCollator(examples);
        using var batch = collator.Collate([0, 1]);

        Assert.Equal(10, batch.Width);
        long[] ids = batch.InputIds.data<long>().ToArray();
        long[] labels = batch.Labels.data<long>().ToArray();
        long[] positions = batch.Positions.data<long>().ToArray();
        long[] segments = batch.SegmentIds!.data<long>().ToArray();

        // Sample s has ids 1000 s + i; its first label is -100 and the rest are the ids.
        Assert.Equal([0, 1, 2, 3, 4, 1000, 1001, 1002, Pad, Pad, 2000, 2001, 2002, 2003, Pad, Pad, Pad, Pad, Pad, Pad], ids);
        Assert.Equal([Ignore, 1, 2, 3, 4, Ignore, 1001, 1002, Ignore, Ignore,
                      Ignore, 2001, 2002, 2003, Ignore, Ignore, Ignore, Ignore, Ignore, Ignore], labels);
        Assert.Equal([0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5], positions);
        Assert.Equal([0, 0, 0, 0, 0, 1, 1, 1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1], segments);
        Assert.Equal(4 + 2 + 3, batch.LabelledTokens);
        Assert.Equal(labels.Count(l => l != Ignore), batch.LabelledTokens);
    }

    [Fact]
    public void Every_sample_appears_whole_and_once_in_the_packed_rows()
    {
        var random = new Random(7);
        var lengths = Enumerable.Range(0, 200).Select(_ => random.Next(1, 33)).ToArray();
        var source = InMemorySamples.OfLengths(32, lengths);
        var examples = new PackedExamples(source);
        using var batch = new MicroBatchCollator(examples).Collate(Enumerable.Range(0, examples.Count).ToArray());
        var ids = batch.InputIds.data<long>().ToArray();
        var segments = batch.SegmentIds!.data<long>().ToArray();

        var seen = new List<int>();
        for (int r = 0; r < examples.Count; r++)
        {
            var row = ids.AsSpan(r * 32, 32);
            var rowSegments = segments.AsSpan(r * 32, 32);
            for (int t = 0; t < 32; t++)
            {
                if (rowSegments[t] == MicroBatch.PaddingSegment) continue;
                if (t > 0 && rowSegments[t] == rowSegments[t - 1]) continue;
                int sample = (int)(row[t] / 1000);
                Assert.Equal(0, row[t] % 1000); // a sample starts at its own first token
                for (int i = 0; i < lengths[sample]; i++)
                {
                    Assert.Equal(1000L * sample + i, row[t + i]);
                    Assert.Equal(rowSegments[t], rowSegments[t + i]);
                }
                seen.Add(sample);
            }
        }
        Assert.Equal(Enumerable.Range(0, lengths.Length), seen.Order());
    }
}
