using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// The 16 NormalFloat4 values of QLoRA, in code order (code 0 is -1, code 7 is 0, code 15 is 1), exactly as
/// bitsandbytes stores them (<c>get_4bit_type("nf4")</c>, and the CUDA kernel's <c>nf4_dequantization_lut</c>).
/// Every value is an exact float32, so the table below is bit-identical to theirs.
/// </summary>
public static class Nf4Codebook
{
    /// <summary>Elements of the flattened weight that share one absmax (bitsandbytes' 4-bit default).</summary>
    public const int BlockSize = 64;

    private static readonly float[] CodeValues =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    /// <summary>The code table, index = 4-bit code.</summary>
    public static ReadOnlySpan<float> Values => CodeValues;

    /// <summary>
    /// The 15 decision thresholds of bitsandbytes' CUDA quantizer (<c>dQuantizeNF4</c> in csrc/kernels.cu), ascending:
    /// a scaled value x gets code k when <c>threshold[k-1] &lt; x &lt;= threshold[k]</c> (the kernel tests <c>x &gt; t</c>,
    /// so a value equal to a threshold takes the lower code).
    /// </summary>
    /// <remarks>
    /// Each is the midpoint of two neighbouring codes, written in the kernel as a decimal float literal. For 4 of the
    /// 15 (k = 0, 8, 12, 14) the exact midpoint lies halfway between two floats and the literal rounds to the other one
    /// than float32 arithmetic <c>(a + b) / 2</c> does, so these thresholds are 1 ulp away from the fp32 midpoints that
    /// bitsandbytes' CPU/default backend uses (torch.bucketize on fp32 midpoints). Measured on an H100 with nvcc 13:
    /// the device code holds exactly these float values. Only inputs whose scaled value is exactly one of those four
    /// floats are coded differently by the two backends.
    /// </remarks>
    public static ReadOnlySpan<float> Thresholds => CudaThresholds;

    private static readonly float[] CudaThresholds =
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
        -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
        0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
        0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    /// <summary>The largest distance between two neighbouring codes (bounds the rounding error: half of it).</summary>
    public static float LargestGap()
    {
        var gap = 0f;
        for (var k = 0; k + 1 < CodeValues.Length; k++) gap = Math.Max(gap, CodeValues[k + 1] - CodeValues[k]);
        return gap;
    }

    internal static Tensor ValuesTensor(Device device) => tensor(CodeValues, device: device);

    internal static Tensor ThresholdsTensor(Device device) => tensor(CudaThresholds, device: device);

    /// <summary>
    /// For each possible packed byte, the two values it decodes to, <c>(nf4[b &gt;&gt; 4], nf4[b &amp; 15])</c>, stored as one
    /// complex64 per byte: one gather of 8-byte elements then decodes both nibbles at once, and view_as_real turns the
    /// result back into [bytes, 2] floats without a copy (measured faster than gathering rows of a [256, 2] table).
    /// </summary>
    internal static Tensor BytePairTable(Device device)
    {
        var pairs = new float[256 * 2];
        for (var b = 0; b < 256; b++)
        {
            pairs[2 * b] = CodeValues[b >> 4];
            pairs[2 * b + 1] = CodeValues[b & 0xF];
        }
        return view_as_complex(tensor(pairs, [256, 2], device: device));
    }
}
