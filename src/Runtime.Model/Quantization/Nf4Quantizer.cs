using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// NF4 quantization as bitsandbytes does it for QLoRA (<c>quantize_4bit(quant_type="nf4", blocksize=64,
/// compress_statistics=True)</c> and <c>dequantize_4bit</c>), with torch ops over whole tensors.
/// </summary>
public static class Nf4Quantizer
{
    /// <summary>
    /// Quantizes a weight of any shape (normally [out, in]) and float dtype. The flattened weight is cut into blocks of
    /// 64 (the last may be shorter and uses the absmax of the values it has); each value times the float32 reciprocal of
    /// its block's absmax goes to the nearest NF4 code by the CUDA kernel's midpoint thresholds
    /// (<see cref="Nf4Codebook.Thresholds"/>), a value exactly on one taking the lower code.
    /// With <paramref name="doubleQuantize"/> (bitsandbytes' <c>compress_statistics</c>, QLoRA's default) the absmax
    /// values are themselves quantized: offset = their mean, and absmax - offset goes through the 8-bit dynamic map in
    /// blocks of 256.
    /// </summary>
    public static Nf4Tensor Quantize(Tensor weight, bool doubleQuantize = true)
    {
        if (!torch.is_floating_point(weight))
            throw new ArgumentException($"NF4 quantization needs a floating-point weight, got {weight.dtype}", nameof(weight));
        if (weight.numel() == 0)
            throw new ArgumentException("NF4 quantization needs a non-empty weight", nameof(weight));

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var shape = weight.shape;
        var n = weight.numel();
        var blocks = Nf4Layout.BlockCount(n);
        var device = weight.device;

        // Zero padding changes no absmax, and padded elements get code 7 (0.0): the CUDA kernel loads missing
        // elements of the last block as 0, which is what leaves 7 in the low nibble of an odd-length tail.
        var flat = DynamicBlockwiseQuantizer.PadTo(weight.detach().reshape(-1).to(ScalarType.Float32), blocks * Nf4Codebook.BlockSize);
        var blocked = flat.view(blocks, Nf4Codebook.BlockSize);
        var absmax = blocked.abs().amax([1]);
        if (!absmax.isfinite().all().item<bool>())
            throw new ArgumentException("NF4 quantization needs a finite weight; it contains NaN or infinity", nameof(weight));

        var scaled = blocked * DynamicBlockwiseQuantizer.ReciprocalForScaling(absmax).unsqueeze(1);
        var codes = torch.bucketize(scaled, Nf4Codebook.ThresholdsTensor(device), outInt32: true).view(-1, 2);
        var bytes = (codes.select(1, 0) * 16 + codes.select(1, 1)).to(ScalarType.Byte);
        var packedLength = Nf4Layout.PackedBytes(n);
        var packed = bytes.narrow(0, 0, packedLength).reshape(packedLength, 1).clone();

        Nf4Tensor result;
        if (!doubleQuantize)
        {
            result = new Nf4Tensor(packed, absmax, null, shape, weight.dtype);
        }
        else
        {
            var offset = absmax.mean();
            var code = tensor(DynamicMap.CreateSigned(), device: device);
            var (absmaxCodes, nestedAbsmax) = DynamicBlockwiseQuantizer.Quantize(absmax - offset, code, Nf4NestedStatistics.BlockSize);
            result = new Nf4Tensor(packed, absmaxCodes, new Nf4NestedStatistics(nestedAbsmax, code, offset.item<float>()), shape, weight.dtype);
        }
        MoveOut(result);
        return result;
    }

    /// <summary>
    /// The weight back in its original shape: <c>nf4[code] * absmax[block]</c> in float32, then cast to
    /// <paramref name="computeDtype"/> (bf16 for QLoRA). Never tracks gradients.
    /// </summary>
    public static Tensor Dequantize(Nf4Tensor quantized, ScalarType computeDtype)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var absmax = quantized.DequantizeAbsmax();
        return Dequantize(quantized.Packed, absmax, quantized.Shape, computeDtype).MoveToOuterDisposeScope();
    }

    /// <summary>The hot path: packed bytes and float32 absmax [blocks] to a [shape] tensor of <paramref name="dtype"/>.</summary>
    internal static Tensor Dequantize(Tensor packed, Tensor absmax, long[] shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var n = shape.Aggregate(1L, (a, b) => a * b);
        var blocks = absmax.shape[0];
        var bytesPerBlock = Nf4Codebook.BlockSize / 2;
        // One gather decodes both nibbles of each byte; a shorter last block is padded so every block is whole.
        var bytes = DynamicBlockwiseQuantizer.PadTo(packed.reshape(-1), blocks * bytesPerBlock);
        var values = view_as_real(Nf4Codebook.BytePairTable(packed.device).index_select(0, bytes.to(ScalarType.Int32)));
        var weights = values.view(blocks, Nf4Codebook.BlockSize).mul_(absmax.unsqueeze(1)).view(-1);
        if (weights.shape[0] != n) weights = weights.narrow(0, 0, n);
        return weights.reshape(shape).to(dtype).MoveToOuterDisposeScope();
    }

    private static void MoveOut(Nf4Tensor t)
    {
        t.Packed.MoveToOuterDisposeScope();
        t.Absmax.MoveToOuterDisposeScope();
        t.Nested?.Absmax.MoveToOuterDisposeScope();
        t.Nested?.Code.MoveToOuterDisposeScope();
    }
}
