using Runtime.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>How Llama 3's rope scaling treats one rotary frequency pair.</summary>
public enum RopeBand
{
    /// <summary>Wavelength below original_max / high_freq_factor: left as is.</summary>
    Unchanged,

    /// <summary>Wavelength between the two bounds: interpolated between scaled and unscaled.</summary>
    Smoothed,

    /// <summary>Wavelength above original_max / low_freq_factor: divided by the factor.</summary>
    Divided,
}

/// <summary>
/// Rotary position embeddings as transformers' LlamaRotaryEmbedding computes them (half-split layout, not interleaved
/// pairs). Not a module: inv_freq is recomputed from the config, never stored, as in HF (a non-persistent buffer).
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    readonly Tensor invFreq;

    public RotaryEmbedding(LlamaConfig config, Device? device = null)
    {
        var freq = ComputeInvFreq(config.HeadDim, config.RopeTheta, config.RopeScaling);
        invFreq = device is null ? freq : freq.to(device);
        if (!ReferenceEquals(invFreq, freq)) freq.Dispose();
        invFreq.DetachFromDisposeScope();
        HeadDim = config.HeadDim;
    }

    public int HeadDim { get; }

    /// <summary>
    /// inv_freq [head_dim / 2] in fp32, step by step as transformers computes it in fp32 (the default rope parameters,
    /// then <c>_compute_llama3_parameters</c> when <paramref name="scaling"/> is given). Python's <c>scalar / tensor</c>
    /// is <c>tensor.reciprocal() * scalar</c>, so that is what is written here, to round the same way.
    /// </summary>
    public static Tensor ComputeInvFreq(int headDim, double theta, RopeScaling? scaling)
    {
        using var scope = NewDisposeScope();
        var invFreq = UnscaledInvFreq(headDim, theta);
        if (scaling is null) return invFreq.MoveToOuterDisposeScope();

        var (low, high) = WavelengthBounds(scaling);
        var wavelen = Wavelength(invFreq);
        var scaled = where(wavelen > low, invFreq / scaling.Factor, invFreq);
        var smooth = (wavelen.reciprocal() * scaling.OriginalMaxPositionEmbeddings - scaling.LowFreqFactor)
                     / (scaling.HighFreqFactor - scaling.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / scaling.Factor + smooth * scaled;
        var isMedium = (wavelen < high).logical_not().logical_and((wavelen > low).logical_not());
        return where(isMedium, smoothed, scaled).MoveToOuterDisposeScope();
    }

    /// <summary>Which band each frequency pair falls in under <paramref name="scaling"/> (all unchanged without).</summary>
    public static RopeBand[] ClassifyBands(int headDim, double theta, RopeScaling? scaling)
    {
        using var scope = NewDisposeScope();
        var invFreq = UnscaledInvFreq(headDim, theta);
        if (scaling is null) return Enumerable.Repeat(RopeBand.Unchanged, (int)invFreq.shape[0]).ToArray();
        var (low, high) = WavelengthBounds(scaling);
        var wavelen = Wavelength(invFreq).data<float>().ToArray();
        return wavelen.Select(w => w > low ? RopeBand.Divided : w < high ? RopeBand.Unchanged : RopeBand.Smoothed).ToArray();
    }

    static Tensor UnscaledInvFreq(int headDim, double theta)
    {
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"head_dim must be positive and even (got {headDim})");
        using var scope = NewDisposeScope();
        var exponent = arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / headDim;
        return (pow(theta, exponent).reciprocal() * 1.0).MoveToOuterDisposeScope();
    }

    static Tensor Wavelength(Tensor invFreq) => invFreq.reciprocal() * (2 * Math.PI);

    static (double Low, double High) WavelengthBounds(RopeScaling s) =>
        (s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, s.OriginalMaxPositionEmbeddings / s.HighFreqFactor);

    /// <summary>The fp32 inv_freq this embedding uses, [head_dim / 2].</summary>
    public Tensor InvFreq => invFreq;

    /// <summary>
    /// cos and sin [batch, seq, head_dim] for positions [batch, seq]: angles in fp32, <c>cat(freqs, freqs)</c>, then
    /// cast to <paramref name="dtype"/> (the activation dtype).
    /// </summary>
    public (Tensor Cos, Tensor Sin) CosSin(Tensor positions, ScalarType dtype)
    {
        if (positions.dim() != 2) throw new ArgumentException($"positions must be [batch, seq]; got [{string.Join(", ", positions.shape)}]");
        using var scope = NewDisposeScope();
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * invFreq;
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos().to(dtype);
        var sin = emb.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <c>x * cos + rotate_half(x) * sin</c> for x [batch, heads, seq, head_dim] and cos/sin [batch, seq, head_dim],
    /// where <c>rotate_half(x) = cat(-x2, x1)</c> over the two halves of head_dim.
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([-x2, x1], -1);
        return (x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    public void Dispose() => invFreq.Dispose();
}
