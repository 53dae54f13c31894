using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

/// <summary>Runtime's forward against the independent double-precision NaiveLlama, and packing against separate runs.</summary>
public class LlamaForwardTests
{
    const double Fp32Tolerance = 1e-4;

    /// <summary>
    /// bf16 keeps 8 significant bits (relative rounding up to 2^-9 = 0.2% per operation). Through 3 layers of rounded
    /// projections, norms and residual adds, the logits drift by a few such roundings: measured (both attention paths,
    /// tied and untied) the mean error was 0.8% of the mean |logit| and the max error 0.7-1.1% of the largest |logit|.
    /// The bounds allow about 2.5x that, far under what a wrong formula gives (tens of percent: the logits' own scale).
    /// </summary>
    const double Bf16MaxRelative = 0.03, Bf16MeanRelative = 0.02;

    [Theory]
    [InlineData(true, AttentionImplementation.Eager)]
    [InlineData(true, AttentionImplementation.ScaledDotProduct)]
    [InlineData(false, AttentionImplementation.Eager)]
    [InlineData(false, AttentionImplementation.ScaledDotProduct)]
    public void Fp32_logits_match_the_naive_reference(bool tied, AttentionImplementation attention)
    {
        var config = MicroLlama.Config(tied);
        var (row0, row1) = (MicroLlama.RandomTokens(40, 1), MicroLlama.RandomTokens(40, 2));
        // Row 1 starts at position 5 (a continued sequence), so positions are not just the token index.
        int[] pos0 = Enumerable.Range(0, 40).ToArray(), pos1 = Enumerable.Range(5, 40).ToArray();

        var actual = RunRuntime(config, MicroLlama.Options(ScalarType.Float32, attention), [row0, row1], [pos0, pos1]);
        var naive = MicroLlama.Naive(config);
        var expected = new[] { naive.Forward(row0, pos0), naive.Forward(row1, pos1) };

        var (max, _) = Difference(actual, expected);
        Assert.True(max < Fp32Tolerance, $"max |runtime - naive| = {max:E3}");
    }

    [Theory]
    [InlineData(true, AttentionImplementation.Eager)]
    [InlineData(true, AttentionImplementation.ScaledDotProduct)]
    [InlineData(false, AttentionImplementation.Eager)]
    [InlineData(false, AttentionImplementation.ScaledDotProduct)]
    public void Bf16_logits_match_the_naive_reference_within_bf16_rounding(bool tied, AttentionImplementation attention)
    {
        var config = MicroLlama.Config(tied);
        var tokens = MicroLlama.RandomTokens(40, 3);
        var positions = Enumerable.Range(0, 40).ToArray();

        var actual = RunRuntime(config, MicroLlama.Options(ScalarType.BFloat16, attention), [tokens], [positions]);
        var expected = new[] { MicroLlama.Naive(config).Forward(tokens, positions) };

        var (max, mean) = Difference(actual, expected);
        double scale = expected.SelectMany(r => r).SelectMany(v => v).Max(Math.Abs);
        double meanScale = expected.SelectMany(r => r).SelectMany(v => v).Average(Math.Abs);
        Assert.True(max < Bf16MaxRelative * scale && mean < Bf16MeanRelative * meanScale,
            $"bf16 vs naive: max {max:F4} (largest |logit| {scale:F3}), mean {mean:F4} (mean |logit| {meanScale:F3})");
        Assert.True(max > 1e-4, "bf16 logits are as exact as fp32: the model did not run in bf16");
    }

    [Theory]
    [InlineData(AttentionImplementation.Eager)]
    [InlineData(AttentionImplementation.ScaledDotProduct)]
    public void A_packed_row_equals_its_segments_run_separately(AttentionImplementation attention)
    {
        var config = MicroLlama.Config(tied: true);
        var options = MicroLlama.Options(ScalarType.Float32, attention);
        var (a, b) = (MicroLlama.RandomTokens(9, 4), MicroLlama.RandomTokens(13, 5));
        int[] packed = [.. a, .. b];
        int[] positions = [.. Enumerable.Range(0, a.Length), .. Enumerable.Range(0, b.Length)];
        int[] segments = [.. Enumerable.Repeat(0, a.Length), .. Enumerable.Repeat(1, b.Length)];

        using var model = MicroLlama.Load(config, options);
        using var scope = NewDisposeScope();
        var packedLogits = MicroLlama.ToArray(model.forward(MicroLlama.Rows(packed), MicroLlama.Rows(positions), MicroLlama.Rows(segments)))[0];
        var aLogits = MicroLlama.ToArray(model.forward(MicroLlama.Rows(a), MicroLlama.Rows(Enumerable.Range(0, a.Length).ToArray())))[0];
        var bLogits = MicroLlama.ToArray(model.forward(MicroLlama.Rows(b), MicroLlama.Rows(Enumerable.Range(0, b.Length).ToArray())))[0];

        var (separateMax, _) = Difference([packedLogits], [[.. aLogits.Select(ToDouble), .. bLogits.Select(ToDouble)]]);
        // Not bit-equal: the fused kernel runs its plain causal path for the separate runs and its masked path for the
        // packed row, so the fp32 sums round differently (logits here reach ~30).
        Assert.True(separateMax < 5e-5, $"packed vs separate: {separateMax:E3}");
        var (naiveMax, _) = Difference([packedLogits], [MicroLlama.Naive(config).Forward(packed, positions, segments)]);
        Assert.True(naiveMax < Fp32Tolerance, $"packed vs naive: {naiveMax:E3}");

        // Without the segment ids the second segment would see the first: the logits must then differ.
        var unmasked = MicroLlama.ToArray(model.forward(MicroLlama.Rows(packed), MicroLlama.Rows(positions)))[0];
        var (leak, _) = Difference([unmasked], [[.. aLogits.Select(ToDouble), .. bLogits.Select(ToDouble)]]);
        Assert.True(leak > 1e-2, "segment ids made no difference: the packed test cannot detect a leaking mask");
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 0.1)]
    public void Eager_and_fused_attention_agree(ScalarType dtype, double tolerance)
    {
        var config = MicroLlama.Config(tied: false);
        int[] row0 = MicroLlama.RandomTokens(30, 6), row1 = MicroLlama.RandomTokens(30, 7);
        int[] positions = [.. Enumerable.Range(0, 12), .. Enumerable.Range(0, 18)];
        int[] segments = [.. Enumerable.Repeat(3, 12), .. Enumerable.Repeat(8, 18)];

        foreach (var packed in new[] { false, true })
        {
            float[][][] Run(AttentionImplementation attention)
            {
                using var model = MicroLlama.Load(config, MicroLlama.Options(dtype, attention));
                using var scope = NewDisposeScope();
                var pos = MicroLlama.Rows(positions, positions);
                return MicroLlama.ToArray(model.forward(MicroLlama.Rows(row0, row1), pos, packed ? MicroLlama.Rows(segments, segments) : null));
            }
            var eager = Run(AttentionImplementation.Eager);
            var fused = Run(AttentionImplementation.ScaledDotProduct);
            var (max, _) = Difference(eager, fused.Select(r => r.Select(ToDouble).ToArray()).ToArray());
            Assert.True(max < tolerance, $"{dtype}, packed {packed}: eager vs sdpa max {max:E3}");
        }
    }

    static float[][][] RunRuntime(Runtime.Model.Config.LlamaConfig config, LlamaModelOptions options, int[][] tokens, int[][] positions)
    {
        using var model = MicroLlama.Load(config, options);
        using var scope = NewDisposeScope();
        var logits = model.forward(MicroLlama.Rows(tokens), MicroLlama.Rows(positions));
        Assert.Equal(ScalarType.Float32, logits.dtype);
        return MicroLlama.ToArray(logits);
    }

    static double[] ToDouble(float[] row) => row.Select(x => (double)x).ToArray();

    /// <summary>Max and mean absolute difference over [row][token][vocab].</summary>
    internal static (double Max, double Mean) Difference(float[][][] actual, double[][][] expected)
    {
        double max = 0, sum = 0;
        long count = 0;
        Assert.Equal(expected.Length, actual.Length);
        for (int r = 0; r < actual.Length; r++)
        {
            Assert.Equal(expected[r].Length, actual[r].Length);
            for (int t = 0; t < actual[r].Length; t++)
                for (int v = 0; v < actual[r][t].Length; v++)
                {
                    double d = Math.Abs(actual[r][t][v] - expected[r][t][v]);
                    if (double.IsNaN(d)) return (double.PositiveInfinity, double.PositiveInfinity);
                    max = Math.Max(max, d);
                    sum += d;
                    count++;
                }
        }
        return (max, sum / count);
    }
}
