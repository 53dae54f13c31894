namespace Runtime.Model.Quantization;

/// <summary>Sizes of the pieces of an NF4 weight of n elements, in memory and in bitsandbytes' serialized form.</summary>
public static class Nf4Layout
{
    /// <summary>Bytes of one serialized code table: <c>quant_map</c> is float32 [16], <c>nested_quant_map</c> float32 [256].</summary>
    private const long QuantMapBytes = 16 * sizeof(float);
    private const long NestedQuantMapBytes = DynamicMap.Size * sizeof(float);

    public static long BlockCount(long elements) => (elements + Nf4Codebook.BlockSize - 1) / Nf4Codebook.BlockSize;

    public static long PackedBytes(long elements) => (elements + 1) / 2;

    public static long NestedBlockCount(long blocks) => (blocks + Nf4NestedStatistics.BlockSize - 1) / Nf4NestedStatistics.BlockSize;

    /// <summary>
    /// Exact bytes of the serialized tensors <c>W</c>, <c>W.absmax</c>, <c>W.quant_map</c> and, when double-quantized,
    /// <c>W.nested_absmax</c> and <c>W.nested_quant_map</c>. The remaining piece, the quant-state JSON, adds about
    /// 170 bytes per weight (its length depends on the shape and the offset's digits).
    /// </summary>
    public static long SerializedTensorBytes(long elements, bool doubleQuantized = true)
    {
        var blocks = BlockCount(elements);
        var bytes = PackedBytes(elements) + QuantMapBytes;
        if (!doubleQuantized) return bytes + blocks * sizeof(float);
        return bytes + blocks + NestedBlockCount(blocks) * sizeof(float) + NestedQuantMapBytes;
    }

    /// <summary>
    /// Serialized bytes per quantized parameter, without the quant-state JSON: 0.5 for the codes, 1/64 for the 8-bit
    /// absmax codes, plus the small second-level statistics; about 0.516 for a 4096 x 4096 weight.
    /// </summary>
    public static double BytesPerParameter(long elements, bool doubleQuantized = true)
        => (double)SerializedTensorBytes(elements, doubleQuantized) / elements;
}
