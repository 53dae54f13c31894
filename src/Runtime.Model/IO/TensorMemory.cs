using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>Raw access to the storage of contiguous CPU tensors, so file bytes move with memcpy, not per element.</summary>
internal static unsafe class TensorMemory
{
    /// <summary>
    /// The address of the first byte of a contiguous CPU tensor's data, or null when it has no elements. TorchSharp's
    /// <c>Tensor.bytes</c> span stops at 2 GiB (an embedding of a 405B model is 4 GiB), so we take the span of the
    /// first element only and use its address: the storage behind it is one native block that the GC never moves, and
    /// the caller keeps <paramref name="tensor"/> alive while it uses the pointer.
    /// </summary>
    public static byte* DataPointer(Tensor tensor)
    {
        // safetensors is little-endian and we copy bytes as they are.
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors I/O needs a little-endian machine");
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException("the tensor must live in CPU memory", nameof(tensor));
        if (!tensor.is_contiguous())
            throw new ArgumentException("the tensor must be contiguous", nameof(tensor));
        if (tensor.numel() == 0) return null;
        using var flat = tensor.reshape(-1);
        using var first = flat.narrow(0, 0, 1);
        return (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    public static long ByteCount(Tensor tensor) => tensor.numel() * tensor.ElementSize;

    /// <summary>
    /// Copies <paramref name="blocks"/> blocks of <paramref name="blockBytes"/> bytes, spaced
    /// <paramref name="sourceStride"/> bytes apart in the source, into consecutive destination bytes: the gather that
    /// extracts a slice along any dimension of a row-major tensor (one block per index of the dimensions before it).
    /// </summary>
    public static void GatherBlocks(byte* source, long sourceStride, long blocks, long blockBytes, byte* destination)
    {
        if (blocks == 0 || blockBytes == 0) return;
        if (sourceStride == blockBytes)
        {
            Buffer.MemoryCopy(source, destination, blocks * blockBytes, blocks * blockBytes);
            return;
        }
        for (long b = 0; b < blocks; b++)
            Buffer.MemoryCopy(source + b * sourceStride, destination + b * blockBytes, blockBytes, blockBytes);
    }
}
