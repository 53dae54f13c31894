namespace Runtime.Training.Planning;

/// <summary>
/// Bytes one NF4 tensor occupies with double-quantized statistics (formats.md): 4-bit codes two per byte, one 8-bit
/// absmax per block of 64, those absmax values quantized blockwise (256 a block) with one fp32 absmax per block, one
/// fp32 offset, and the two code tables (16 NF4 values and 256 dynamic-map values, fp32).
/// </summary>
public static class Nf4Storage
{
    public const int BlockSize = 64;
    public const int StatisticsBlockSize = 256;
    const int Nf4CodeTableBytes = 16 * 4;
    const int DynamicMapBytes = 256 * 4;
    const int OffsetBytes = 4;

    public static long Bytes(long elements)
    {
        if (elements <= 0) return 0;
        long blocks = CeilDiv(elements, BlockSize);
        long statisticsBlocks = CeilDiv(blocks, StatisticsBlockSize);
        return CeilDiv(elements, 2)       // codes
               + blocks                   // 8-bit absmax per block
               + 4 * statisticsBlocks     // fp32 absmax of each block of absmax values
               + OffsetBytes + Nf4CodeTableBytes + DynamicMapBytes;
    }

    /// <summary>Bytes per element for a large tensor: 1/2 + 1/64 + 4/(64*256) ≈ 0.5159.</summary>
    public static double BytesPerParameter => 0.5 + 1.0 / BlockSize + 4.0 / ((double)BlockSize * StatisticsBlockSize);

    static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
