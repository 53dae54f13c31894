using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// The vocab-parallel cross entropy on its own: each rank holds columns [r V/t, (r+1) V/t) of random logits; its loss,
/// logit gradients and token log-probabilities are torch's cross entropy on the whole logits (the plain
/// <see cref="CausalLmLoss"/>), with one all-reduce in the forward and none in the backward.
/// </summary>
public sealed class VocabularyParallelCrossEntropyTests
{
    const int Vocab = 256, Batch = 3, Length = 9;

    /// <summary>
    /// Logits [3, 9, 256] spread over a wide range (the maximum of a row sits on any rank), with one token whose
    /// logits on the last quarter of the vocabulary are hopeless (-1e4) and one whose are huge (+60).
    /// </summary>
    static float[] RandomLogits(int seed)
    {
        var random = new Random(seed);
        var values = Enumerable.Range(0, Batch * Length * Vocab).Select(_ => (float)(8 * (2 * random.NextDouble() - 1))).ToArray();
        for (int v = 3 * Vocab / 4; v < Vocab; v++)
        {
            values[(0 * Length + 2) * Vocab + v] = -1e4f;
            values[(1 * Length + 4) * Vocab + v] = 60f + v % 7;
        }
        return values;
    }

    /// <summary>Labels [3, 9] over the whole vocabulary, with -100 at a few places (one whole row but its first).</summary>
    static long[] Labels(int seed)
    {
        var random = new Random(seed);
        var labels = Enumerable.Range(0, Batch * Length).Select(_ => (long)random.Next(Vocab)).ToArray();
        labels[4] = labels[6] = CausalLmLoss.IgnoreIndex;
        for (int i = 1; i < Length; i++) labels[2 * Length + i] = CausalLmLoss.IgnoreIndex;
        labels[2 * Length + 5] = 200; // one labelled token in the last row
        labels[Length + 5] = 250; // the +60 token of row 1 (position 4) predicts a label in that quarter
        return labels;
    }

    sealed record RankLoss(float Sum, long Count, float[] Gradient, long CallsInForward, long CallsInBackward);

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Loss_and_logit_gradients_are_torchs_cross_entropy_on_the_whole_logits(int tp)
    {
        var logits = RandomLogits(1);
        var labels = Labels(2);
        const float seed = 0.37f; // the backward's seed, as a loss scale would be
        float expectedSum;
        float[] expectedGradient;
        using (var whole = tensor(logits, [Batch, Length, Vocab]).requires_grad_(true))
        using (var target = tensor(labels, [Batch, Length]))
        {
            using var sum = CausalLmLoss.SumNll(whole, target);
            using var scaled = sum * seed;
            scaled.backward();
            expectedSum = sum.ToSingle();
            expectedGradient = Values(whole.grad!);
        }

        var group = LocalTensorParallelGroup.Create(tp, TensorParallelRanks.Timeout);
        var ranks = TensorParallelRanks.Run(group, member =>
        {
            using var scope = NewDisposeScope();
            long width = Vocab / tp;
            var local = tensor(logits, [Batch, Length, Vocab]).narrow(2, member.Rank * width, width).contiguous().requires_grad_(true);
            var (sum, count) = CausalLmLoss.Compute(local, tensor(labels, [Batch, Length]), member);
            long forward = group[member.Rank].Calls;
            (sum * seed).backward();
            return new RankLoss(sum.ToSingle(), count, Values(local.grad!), forward, group[member.Rank].Calls - forward);
        });

        long expectedCount = Enumerable.Range(0, Batch).Sum(b => Enumerable.Range(1, Length - 1).Count(i => labels[b * Length + i] != -100));
        foreach (var (rank, r) in ranks.Select((r, i) => (i, r)))
        {
            Assert.Equal(expectedCount, r.Count);
            Assert.True(Math.Abs(r.Sum - expectedSum) <= 1e-6 * Math.Abs(expectedSum), $"rank {rank}: loss {r.Sum:R}, expected {expectedSum:R}");
            using var whole = tensor(expectedGradient, [Batch, Length, Vocab]);
            AssertClose(Part(whole, new TensorSlice(2, rank * Vocab / tp, Vocab / tp)), r.Gradient, 1e-6, $"rank {rank}'s logit gradient");
            Assert.Equal(1, r.CallsInForward);
            Assert.Equal(0, r.CallsInBackward);
        }
        for (int rank = 1; rank < tp; rank++)
            Assert.Equal(BitConverter.SingleToInt32Bits(ranks[0].Sum), BitConverter.SingleToInt32Bits(ranks[rank].Sum));
        // The -1e4 and +60 tokens are labelled, so the test sees the extremes (and their gradients are not all zero).
        Assert.Contains(ranks[^1].Gradient, g => g != 0);
    }

    [Fact]
    public void The_global_logsumexp_is_bitwise_the_same_on_every_rank_and_the_whole_rows()
    {
        const int tp = 4;
        var logits = RandomLogits(3);
        float[] expected;
        using (var whole = tensor(logits, [Batch * Length, Vocab]))
        using (var lse = whole.to(ScalarType.Float64).logsumexp(1))
            expected = Values(lse);

        var ranks = TensorParallelRanks.Run(tp, group =>
        {
            using var scope = NewDisposeScope();
            var local = tensor(logits, [Batch * Length, Vocab]).narrow(1, group.Rank * Vocab / tp, Vocab / tp);
            return Values(VocabularyParallelCrossEntropy.GlobalLogSumExp(local, group));
        });
        AssertClose(expected, ranks[0], 1e-6, "global logsumexp against the whole rows' (fp64)");
        for (int rank = 1; rank < tp; rank++) AssertBitwiseEqual(ranks[0], ranks[rank], $"rank {rank}'s global logsumexp");
    }

    [Fact]
    public void Token_log_probabilities_are_the_whole_logits_ones_on_every_rank()
    {
        const int tp = 2;
        var logits = RandomLogits(4);
        var tokens = Labels(5).Select(l => l < 0 ? 7L : l).ToArray();
        float[] expected;
        using (var whole = tensor(logits, [Batch, Length, Vocab]))
        using (var ids = tensor(tokens, [Batch, Length]))
        using (var logProbs = CausalLmLoss.TokenLogProbs(whole, ids))
            expected = Values(logProbs);

        var ranks = TensorParallelRanks.Run(tp, group =>
        {
            using var scope = NewDisposeScope();
            var local = tensor(logits, [Batch, Length, Vocab]).narrow(2, group.Rank * Vocab / tp, Vocab / tp);
            var logProbs = CausalLmLoss.TokenLogProbs(local, tensor(tokens, [Batch, Length]), group);
            Assert.Equal(new long[] { Batch, Length - 1 }, logProbs.shape);
            return Values(logProbs);
        });
        AssertClose(expected, ranks[0], 1e-5, "token log-probabilities");
        AssertBitwiseEqual(ranks[0], ranks[1], "rank 1's token log-probabilities");
    }

    [Fact]
    public void Nothing_labelled_gives_zero_and_no_gradient()
    {
        var logits = RandomLogits(6);
        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var scope = NewDisposeScope();
            var local = tensor(logits, [Batch, Length, Vocab]).narrow(2, group.Rank * Vocab / 2, Vocab / 2).contiguous().requires_grad_(true);
            var labels = full([Batch, Length], CausalLmLoss.IgnoreIndex, ScalarType.Int64);
            labels[0, 0] = tensor(5L); // the first position is never a label after the shift
            var (sum, count) = CausalLmLoss.Compute(local, labels, group);
            sum.backward();
            return (Sum: sum.ToSingle(), Count: count, Gradient: Values(local.grad!));
        });
        Assert.All(ranks, r =>
        {
            Assert.Equal(0f, r.Sum);
            Assert.Equal(0, r.Count);
            Assert.All(r.Gradient, g => Assert.Equal(0f, g));
        });
    }

    [Theory]
    [InlineData(256L)]
    [InlineData(-3L)]
    public void A_label_outside_the_vocabulary_is_refused_before_any_communication(long label)
    {
        var logits = RandomLogits(7);
        var labels = Labels(8);
        labels[Length + 3] = label;
        var group = LocalTensorParallelGroup.Create(2, TensorParallelRanks.Timeout);
        var error = Assert.Throws<AggregateException>(() => TensorParallelRanks.Run(group, member =>
        {
            using var scope = NewDisposeScope();
            var local = tensor(logits, [Batch, Length, Vocab]).narrow(2, member.Rank * Vocab / 2, Vocab / 2);
            return CausalLmLoss.SumNll(local, tensor(labels, [Batch, Length]), member).ToSingle();
        }));
        Assert.Equal($"label id {label} is outside the vocabulary 0 .. 255 (and is not -100)", error.InnerException!.Message);
        Assert.All(group, member => Assert.Equal(0, member.Calls));
    }

    [Fact]
    public void Without_a_split_the_overloads_are_the_plain_loss_bit_for_bit()
    {
        var logits = RandomLogits(9);
        var labels = Labels(10);
        using var whole = tensor(logits, [Batch, Length, Vocab]);
        using var target = tensor(labels, [Batch, Length]);
        var single = LocalTensorParallelGroup.Create(1)[0];
        using var plain = CausalLmLoss.SumNll(whole, target);
        using var noGroup = CausalLmLoss.SumNll(whole, target, null);
        using var sizeOne = CausalLmLoss.SumNll(whole, target, single);
        Assert.Equal(BitConverter.SingleToInt32Bits(plain.ToSingle()), BitConverter.SingleToInt32Bits(noGroup.ToSingle()));
        Assert.Equal(BitConverter.SingleToInt32Bits(plain.ToSingle()), BitConverter.SingleToInt32Bits(sizeOne.ToSingle()));
        Assert.Equal(0, single.Calls);
    }
}
