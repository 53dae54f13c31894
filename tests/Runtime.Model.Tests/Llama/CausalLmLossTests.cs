using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class CausalLmLossTests
{
    const int Vocab = 11;

    static float[] RandomLogits(int batch, int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * length * Vocab).Select(_ => (float)(4 * random.NextDouble() - 2)).ToArray();
    }

    /// <summary>HF's definition, in double: the logits at t predict labels[t + 1]; mean over labels that are not -100.</summary>
    static (double Sum, long Count) ReferenceNll(float[] logits, long[][] labels)
    {
        double sum = 0;
        long count = 0;
        int length = labels[0].Length;
        for (int b = 0; b < labels.Length; b++)
            for (int t = 0; t + 1 < length; t++)
            {
                long target = labels[b][t + 1];
                if (target == -100) continue;
                int row = (b * length + t) * Vocab;
                double max = Enumerable.Range(0, Vocab).Max(v => (double)logits[row + v]);
                double logSumExp = max + Math.Log(Enumerable.Range(0, Vocab).Sum(v => Math.Exp(logits[row + v] - max)));
                sum += logSumExp - logits[row + target];
                count++;
            }
        return (sum, count);
    }

    static Tensor Labels(long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);

    [Fact]
    public void Sum_over_count_is_Hugging_Face_mean_cross_entropy_after_the_shift()
    {
        long[][] labels = [[-100, 3, 4, -100, 10, 0, 7], [5, -100, -100, 1, 2, 9, -100]];
        var logits = RandomLogits(2, 7, 1);
        var (expectedSum, expectedCount) = ReferenceNll(logits, labels);

        using var scope = NewDisposeScope();
        var (sum, count) = CausalLmLoss.Compute(tensor(logits, [2, 7, Vocab]), Labels(labels));
        Assert.Equal(ScalarType.Float32, sum.dtype);
        Assert.Equal(0, sum.dim());
        Assert.Equal(expectedCount, count);
        Assert.Equal(5 + 3, count); // by hand; the labels at index 0 (-100 and 5) never count: nothing predicts them
        Assert.Equal(expectedSum, sum.ToDouble(), 1e-4);
        Assert.Equal(expectedSum / expectedCount, sum.ToDouble() / count, 1e-5);
    }

    [Fact]
    public void Accumulated_sums_over_total_count_equal_the_loss_of_the_concatenated_batch()
    {
        long[][] a = [[1, 2, -100, -100, -100, -100], [4, 5, 6, 7, 8, 9]];
        long[][] b = [[3, -100, 2, -100, -100, 1]];
        var (logitsA, logitsB) = (RandomLogits(2, 6, 2), RandomLogits(1, 6, 3));

        using var scope = NewDisposeScope();
        var first = CausalLmLoss.Compute(tensor(logitsA, [2, 6, Vocab]), Labels(a));
        var second = CausalLmLoss.Compute(tensor(logitsB, [1, 6, Vocab]), Labels(b));
        double accumulated = (first.Sum.ToDouble() + second.Sum.ToDouble()) / (first.Count + second.Count);

        var whole = CausalLmLoss.Compute(tensor([.. logitsA, .. logitsB], [3, 6, Vocab]), Labels([.. a, .. b]));
        Assert.Equal(first.Count + second.Count, whole.Count);
        Assert.Equal(whole.Sum.ToDouble() / whole.Count, accumulated, 1e-5);

        // The micro-batches hold different label counts, so averaging their means would be a different number.
        double meanOfMeans = (first.Sum.ToDouble() / first.Count + second.Sum.ToDouble() / second.Count) / 2;
        Assert.True(Math.Abs(meanOfMeans - accumulated) > 1e-3);
    }

    [Fact]
    public void Bf16_logits_are_scored_in_fp32()
    {
        long[][] labels = [[2, 3, 4, 5, 6]];
        var logits = RandomLogits(1, 5, 4).Select(MicroLlama.RoundToBFloat16).ToArray();
        var (expectedSum, _) = ReferenceNll(logits, labels);
        using var scope = NewDisposeScope();
        var sum = CausalLmLoss.SumNll(tensor(logits, [1, 5, Vocab]).to(ScalarType.BFloat16), Labels(labels));
        Assert.Equal(ScalarType.Float32, sum.dtype);
        Assert.Equal(expectedSum, sum.ToDouble(), 1e-4);
    }

    [Fact]
    public void A_batch_without_labels_sums_to_zero_over_zero_tokens()
    {
        using var scope = NewDisposeScope();
        var (sum, count) = CausalLmLoss.Compute(tensor(RandomLogits(1, 4, 5), [1, 4, Vocab]), Labels([[1, -100, -100, -100]]));
        Assert.Equal(0, count);
        Assert.Equal(0.0, sum.ToDouble());
    }

    [Fact]
    public void Token_log_probs_are_log_p_of_each_next_token()
    {
        long[][] tokens = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]];
        var logits = RandomLogits(2, 6, 6);
        using var scope = NewDisposeScope();
        var logProbs = CausalLmLoss.TokenLogProbs(tensor(logits, [2, 6, Vocab]), Labels(tokens));
        Assert.Equal([2L, 5], logProbs.shape);
        var actual = logProbs.data<float>().ToArray();
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 5; t++)
            {
                var row = logits.AsSpan((b * 6 + t) * Vocab, Vocab).ToArray();
                double logSumExp = Math.Log(row.Sum(x => Math.Exp(x)));
                Assert.Equal(row[tokens[b][t + 1]] - logSumExp, actual[b * 5 + t], 1e-5);
            }
    }
}
