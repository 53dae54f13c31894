using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>Raw access to a contiguous tensor's data, so channels move bytes with memcpy (CPU) or hand NCCL a device pointer.</summary>
internal static class TensorBytes
{
    /// <summary>
    /// The address of the tensor's first element (storage offset included), on whatever device it lives. TorchSharp keeps
    /// this entry point internal; <c>Tensor.bytes</c> works only on CPU and stops at 2 GiB, and <c>Storage.data_ptr</c>
    /// converts the dtype (copying) for anything but a handful of element types, so we ask LibTorchSharp directly.
    /// </summary>
    public static IntPtr DataPointer(Tensor tensor)
    {
        if (!tensor.is_contiguous())
            throw new ArgumentException("the tensor must be contiguous", nameof(tensor));
        if (tensor.numel() == 0) return IntPtr.Zero;
        var pointer = THSTensor_data(tensor.Handle);
        if (pointer == IntPtr.Zero)
            throw new InvalidOperationException($"LibTorchSharp returned no data pointer for a {tensor.dtype} tensor of shape [{string.Join(", ", tensor.shape)}]");
        return pointer;
    }

    public static long ByteCount(Tensor tensor) => tensor.numel() * tensor.ElementSize;

    /// <summary>A span over <paramref name="length"/> bytes of a contiguous CPU tensor, starting <paramref name="offset"/> bytes in.</summary>
    public static unsafe Span<byte> CpuSpan(Tensor tensor, long offset, int length)
    {
        if (tensor.device_type != DeviceType.CPU)
            throw new ArgumentException($"the tensor lives on {tensor.device}; byte access needs CPU memory", nameof(tensor));
        if (offset < 0 || length < 0 || offset + length > ByteCount(tensor))
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset + length}) lie outside the tensor's {ByteCount(tensor)}");
        if (length == 0) return Span<byte>.Empty;
        return new Span<byte>((byte*)DataPointer(tensor) + offset, length);
    }

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);
}
