using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// 8-bit blockwise quantization against a sorted 256-value code (bitsandbytes' <c>quantize_blockwise</c> /
/// <c>dequantize_blockwise</c>), used here only for the nested absmax statistics of NF4 (blocks of 256).
/// </summary>
internal static class DynamicBlockwiseQuantizer
{
    /// <summary>
    /// Each block of <paramref name="blockSize"/> consecutive values is scaled by the float32 reciprocal of its absolute
    /// maximum and mapped to the nearest of the 256 sorted codes. A shorter last block uses the absmax of the values it
    /// has. Returns (uint8 codes [n], fp32 absmax [ceil(n / blockSize)]).
    /// </summary>
    /// <remarks>
    /// bitsandbytes' CUDA kernel (<c>dQuantize</c>) walks a fixed binary search (pivot 127, steps 64, 32, ..., 1), then
    /// compares the value with the float32 midpoint between the code it landed on and the neighbour on the value's side.
    /// That is the nearest code, except for a value exactly on a midpoint, which stays with the landing code: the lower
    /// one for some midpoints, the upper one for others. Here: nearest by midpoints, then that tie rule, so the codes
    /// match the CUDA kernel bit for bit (bitsandbytes' CPU backend sends every tie to the lower code instead).
    /// </remarks>
    public static (Tensor Codes, Tensor Absmax) Quantize(Tensor values, Tensor code, int blockSize)
    {
        if (code.numel() != TieCodes.Length)
            throw new ArgumentException($"the dynamic code must have {TieCodes.Length} values, got {code.numel()}", nameof(code));
        using var scope = NewDisposeScope();
        var flat = values.reshape(-1).to(ScalarType.Float32);
        var n = flat.shape[0];
        var blocks = (n + blockSize - 1) / blockSize;
        var blocked = PadTo(flat, blocks * blockSize).view(blocks, blockSize);
        var absmax = blocked.abs().amax([1]);
        var scaled = (blocked * ReciprocalForScaling(absmax).unsqueeze(1)).reshape(-1);
        var sortedCode = code.to(ScalarType.Float32);
        var count = sortedCode.shape[0];
        var midpoints = (sortedCode.narrow(0, 0, count - 1) + sortedCode.narrow(0, 1, count - 1)) * 0.5f;
        var nearest = torch.bucketize(scaled, midpoints, outInt32: true); // a tie goes to the lower code
        // The midpoint at each result's upper edge (none above the last code), to find the values exactly on one.
        var upperEdge = torch.cat([midpoints, tensor(new[] { float.PositiveInfinity }, device: flat.device)]).index_select(0, nearest);
        var onMidpoint = scaled.eq(upperEdge);
        var tieCodes = tensor(TieCodes, device: flat.device).index_select(0, nearest);
        var codes = torch.where(onMidpoint, tieCodes, nearest).to(ScalarType.Byte);
        return (codes.narrow(0, 0, n).clone().MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// For a value exactly on the midpoint between codes k and k + 1, the code the CUDA kernel's binary search lands on.
    /// Such a value exceeds code[p] exactly when p &lt;= k, which fixes every step of the search.
    /// </summary>
    private static readonly int[] TieCodes = BuildTieCodes(DynamicMap.Size);

    private static int[] BuildTieCodes(int size)
    {
        var result = new int[size];
        for (var k = 0; k < size; k++)
        {
            var pivot = size / 2 - 1;
            for (var step = size / 4; step > 0; step /= 2) pivot += pivot <= k ? step : -step;
            result[k] = pivot;
        }
        return result;
    }

    /// <summary><c>code[q] * absmax[i / blockSize]</c> in float32, flat [n].</summary>
    public static Tensor Dequantize(Tensor codes, Tensor absmax, Tensor code, int blockSize)
    {
        using var scope = NewDisposeScope();
        var n = codes.numel();
        var blocks = absmax.shape[0];
        var values = code.to(ScalarType.Float32).index_select(0, PadTo(codes.reshape(-1), blocks * blockSize).to(ScalarType.Int32));
        var scaled = values.view(blocks, blockSize) * absmax.to(ScalarType.Float32).unsqueeze(1);
        return scaled.view(-1).narrow(0, 0, n).clone().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// 1 / absmax as the CUDA kernels compute it (a float32 reciprocal, then a multiply). An all-zero block would give
    /// 0 * inf = NaN; clamping to the smallest normal float keeps its scaled values at 0 (bitsandbytes' default backend
    /// clamps the same way) while leaving every ordinary absmax untouched.
    /// </summary>
    internal static Tensor ReciprocalForScaling(Tensor absmax) => absmax.clamp_min(SmallestNormalFloat).reciprocal();

    /// <summary>FLT_MIN, 2^-126: its reciprocal is still finite.</summary>
    private const float SmallestNormalFloat = 1.17549435e-38f;

    /// <summary>The flat tensor extended with zeros to <paramref name="length"/> elements (itself when already that long).</summary>
    internal static Tensor PadTo(Tensor flat, long length)
    {
        var missing = length - flat.shape[0];
        if (missing == 0) return flat;
        return torch.cat([flat, zeros(missing, dtype: flat.dtype, device: flat.device)]);
    }
}
