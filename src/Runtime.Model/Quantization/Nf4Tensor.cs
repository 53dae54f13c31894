using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// The second level of double quantization: the per-64-block absmax values minus <see cref="Offset"/> are stored as
/// uint8 codes into <see cref="Code"/> (bitsandbytes' signed dynamic map), each run of <see cref="BlockSize"/> codes
/// with its own float32 absmax in <see cref="Absmax"/>. Dequantized: <c>absmax = Code[q] * Absmax[b / 256] + Offset</c>.
/// </summary>
/// <param name="Absmax">float32 [ceil(blocks / 256)] (bitsandbytes' <c>nested_absmax</c>).</param>
/// <param name="Code">float32 [256], sorted (<c>nested_quant_map</c>).</param>
/// <param name="Offset">The mean of the first-level absmax values (<c>nested_offset</c>).</param>
public sealed record Nf4NestedStatistics(Tensor Absmax, Tensor Code, float Offset)
{
    /// <summary>bitsandbytes always double-quantizes 4-bit statistics in blocks of 256.</summary>
    public const int BlockSize = 256;
}

/// <summary>
/// A weight quantized to NF4 in bitsandbytes' layout; owns its tensors.
/// </summary>
/// <remarks>
/// <see cref="Packed"/> holds the codes of the row-major flattened weight, two per byte with the FIRST element in the
/// HIGH nibble, shaped [(n + 1) / 2, 1] as bitsandbytes allocates it (an odd count leaves code 7, i.e. 0.0, in the
/// last low nibble). <see cref="Absmax"/> has one entry per block of 64 (the last block may be shorter): float32
/// values, or, when <see cref="Nested"/> is set, uint8 codes into the nested statistics.
/// </remarks>
public sealed class Nf4Tensor : IDisposable
{
    public Nf4Tensor(Tensor packed, Tensor absmax, Nf4NestedStatistics? nested, long[] shape, ScalarType dtype)
    {
        if (shape.Length == 0 || shape.Any(d => d <= 0))
            throw new ArgumentException($"NF4 weight shape [{string.Join(", ", shape)}] must have at least one dimension, all positive", nameof(shape));
        Shape = [.. shape];
        DType = dtype;
        ElementCount = shape.Aggregate(1L, (a, b) => a * b);
        BlockCount = Nf4Layout.BlockCount(ElementCount);

        Expect(packed, "packed codes", ScalarType.Byte, [Nf4Layout.PackedBytes(ElementCount), 1]);
        if (nested is null)
        {
            Expect(absmax, "absmax", ScalarType.Float32, [BlockCount]);
        }
        else
        {
            Expect(absmax, "absmax codes", ScalarType.Byte, [BlockCount]);
            Expect(nested.Absmax, "nested absmax", ScalarType.Float32, [Nf4Layout.NestedBlockCount(BlockCount)]);
            Expect(nested.Code, "nested code map", ScalarType.Float32, [DynamicMap.Size]);
        }
        Packed = packed;
        Absmax = absmax;
        Nested = nested;
    }

    /// <summary>uint8 [(n + 1) / 2, 1].</summary>
    public Tensor Packed { get; }

    /// <summary>float32 [blocks], or uint8 [blocks] codes into <see cref="Nested"/> when double-quantized.</summary>
    public Tensor Absmax { get; }

    public Nf4NestedStatistics? Nested { get; }

    public bool IsDoubleQuantized => Nested is not null;

    /// <summary>The original weight's shape ([out, in] for a linear layer).</summary>
    public long[] Shape { get; }

    /// <summary>The original weight's dtype (what bitsandbytes records as <c>dtype</c>).</summary>
    public ScalarType DType { get; }

    public int BlockSize => Nf4Codebook.BlockSize;

    public long ElementCount { get; }

    public long BlockCount { get; }

    /// <summary>The per-64-block absmax values in float32 [blocks] (undoing double quantization if present).</summary>
    public Tensor DequantizeAbsmax()
    {
        if (Nested is null) return Absmax.clone();
        using var scope = NewDisposeScope();
        var absmax = DynamicBlockwiseQuantizer.Dequantize(Absmax, Nested.Absmax, Nested.Code, Nf4NestedStatistics.BlockSize);
        return absmax.add_(Nested.Offset).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Packed.Dispose();
        Absmax.Dispose();
        Nested?.Absmax.Dispose();
        Nested?.Code.Dispose();
    }

    private static void Expect(Tensor t, string what, ScalarType dtype, long[] shape)
    {
        if (t.dtype != dtype || !t.shape.SequenceEqual(shape))
            throw new ArgumentException(
                $"NF4 {what} must be {dtype} [{string.Join(", ", shape)}], got {t.dtype} [{string.Join(", ", t.shape)}]");
    }
}
