using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Model.Tests.Reference;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class RotaryEmbeddingTests
{
    static readonly RopeScaling Llama31 = new(8.0, 1.0, 4.0, 8192);

    static float[] InvFreq(RopeScaling? scaling, int dim = 128, double theta = 500000)
    {
        using var t = RotaryEmbedding.ComputeInvFreq(dim, theta, scaling);
        Assert.Equal(ScalarType.Float32, t.dtype);
        return t.data<float>().ToArray();
    }

    [Fact]
    public void Llama31_inv_freq_matches_the_reference_values()
    {
        var plain = InvFreq(null);
        var scaled = InvFreq(Llama31);
        Assert.Equal(64, scaled.Length);
        // llama-hf.md prints five significant digits: compare to half a unit of the last printed digit.
        AssertClose(2.1311e-3, plain[30], 0.00005e-3);
        AssertClose(1.3719e-3, scaled[30], 0.00005e-3);
        AssertClose(2.7425e-4, plain[40], 0.00005e-4);
        AssertClose(3.4281e-5, scaled[40], 0.00005e-5);
    }

    [Fact]
    public void Llama31_bands_are_0_to_28_unchanged_29_to_34_smoothed_35_to_63_divided()
    {
        var bands = RotaryEmbedding.ClassifyBands(128, 500000, Llama31);
        var plain = InvFreq(null);
        var scaled = InvFreq(Llama31);
        for (int i = 0; i < 64; i++)
        {
            var expected = i <= 28 ? RopeBand.Unchanged : i <= 34 ? RopeBand.Smoothed : RopeBand.Divided;
            Assert.Equal(expected, bands[i]);
            switch (expected)
            {
                case RopeBand.Unchanged:
                    Assert.Equal(plain[i], scaled[i]);
                    break;
                case RopeBand.Divided:
                    Assert.Equal(plain[i] / 8, scaled[i], plain[i] * 1e-6);
                    break;
                default: // strictly between the two
                    Assert.InRange(scaled[i], plain[i] / 8 * (1 + 1e-6), plain[i] * (1 - 1e-6));
                    break;
            }
        }
    }

    [Fact]
    public void Unscaled_inv_freq_is_theta_to_the_minus_2i_over_dim()
    {
        var values = InvFreq(null, 64, 10000);
        for (int i = 0; i < 32; i++)
            AssertClose(Math.Pow(10000, -2.0 * i / 64), values[i], 2e-7 * values[i]);
        Assert.All(RotaryEmbedding.ClassifyBands(64, 10000, null), b => Assert.Equal(RopeBand.Unchanged, b));
    }

    [Fact]
    public void Scaled_inv_freq_agrees_with_the_naive_formula_in_double()
    {
        var scaling = new RopeScaling(32.0, 1.0, 4.0, 8192);
        var runtime = InvFreq(scaling, 64, 500000);
        var naive = NaiveLlama.InvFreq(64, 500000, scaling);
        for (int i = 0; i < naive.Length; i++)
            AssertClose(naive[i], runtime[i], 1e-6 * naive[i]);
    }

    [Fact]
    public void Cos_and_sin_are_computed_in_fp32_then_cast_to_the_activation_dtype()
    {
        var config = MicroLlama.Config(tied: true);
        using var rotary = new RotaryEmbedding(config);
        using var scope = NewDisposeScope();
        var positions = AttentionContext.SequentialPositions(1, 300);
        var (cos32, sin32) = rotary.CosSin(positions, ScalarType.Float32);
        var (cos16, sin16) = rotary.CosSin(positions, ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, cos16.dtype);
        Assert.Equal([1L, 300, config.HeadDim], cos16.shape);
        // bf16 values must be the fp32 values rounded once, not angles computed in bf16 (which at position ~300
        // would be off by whole radians).
        Assert.True(cos16.to(ScalarType.Float32).eq(cos32.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().ToBoolean());
        Assert.True(sin16.to(ScalarType.Float32).eq(sin32.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().ToBoolean());

        // Half-split layout: the second half of head_dim repeats the first half's frequencies.
        var invFreq = NaiveLlama.InvFreq(config.HeadDim, config.RopeTheta, config.RopeScaling);
        var cos = cos32[0, 299].data<float>().ToArray();
        for (int i = 0; i < config.HeadDim; i++)
            AssertClose(Math.Cos(299 * invFreq[i % (config.HeadDim / 2)]), cos[i], 1e-4);
    }

    [Fact]
    public void Rotation_is_half_split_not_interleaved()
    {
        using var scope = NewDisposeScope();
        // One head, head_dim 4: x = (a0, a1, b0, b1) pairs (a0, b0) and (a1, b1) rotate by their angles.
        var x = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 1, 1, 4);
        double t0 = 0.3, t1 = 0.7;
        var cos = tensor(new[] { (float)Math.Cos(t0), (float)Math.Cos(t1), (float)Math.Cos(t0), (float)Math.Cos(t1) }).reshape(1, 1, 4);
        var sin = tensor(new[] { (float)Math.Sin(t0), (float)Math.Sin(t1), (float)Math.Sin(t0), (float)Math.Sin(t1) }).reshape(1, 1, 4);
        var y = RotaryEmbedding.Apply(x, cos, sin).data<float>().ToArray();
        double[] expected =
        [
            1 * Math.Cos(t0) - 3 * Math.Sin(t0), 2 * Math.Cos(t1) - 4 * Math.Sin(t1),
            3 * Math.Cos(t0) + 1 * Math.Sin(t0), 4 * Math.Cos(t1) + 2 * Math.Sin(t1),
        ];
        for (int i = 0; i < 4; i++) AssertClose(expected[i], y[i], 1e-6);
    }

    static void AssertClose(double expected, double actual, double tolerance) =>
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"expected {expected:E6}, got {actual:E6} (tolerance {tolerance:E1})");
}
