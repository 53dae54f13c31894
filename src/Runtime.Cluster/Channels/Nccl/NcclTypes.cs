using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Nccl;

/// <summary><c>ncclDataType_t</c>, values as in nccl.h.</summary>
public enum NcclDataType
{
    Int8 = 0,
    Uint8 = 1,
    Int32 = 2,
    Uint32 = 3,
    Int64 = 4,
    Uint64 = 5,
    Float16 = 6,
    Float32 = 7,
    Float64 = 8,
    Bfloat16 = 9,
}

/// <summary><c>ncclRedOp_t</c>, values as in nccl.h.</summary>
public enum NcclRedOp
{
    Sum = 0,
    Prod = 1,
    Max = 2,
    Min = 3,
    Avg = 4,
}

/// <summary><c>ncclResult_t</c>, values as in nccl.h.</summary>
public enum NcclResult
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
    InProgress = 7,
}

/// <summary>
/// <c>typedef struct { char internal[128]; } ncclUniqueId;</c>: opaque bytes made by rank 0 and handed to every rank
/// out of band; <c>ncclCommInitRank</c> takes it by value, so the layout must be exactly 128 bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = Size)]
public unsafe struct NcclUniqueId
{
    public const int Size = 128;

    // A fixed buffer keeps the struct blittable, so the marshaller passes it by value exactly as C does.
    fixed byte _internal[Size];

    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new ArgumentException($"an NCCL unique id is {Size} bytes, got {bytes.Length}", nameof(bytes));
        var id = new NcclUniqueId();
        bytes.CopyTo(new Span<byte>(id._internal, Size));
        return id;
    }

    public readonly byte[] ToArray()
    {
        fixed (byte* bytes = _internal) return new ReadOnlySpan<byte>(bytes, Size).ToArray();
    }
}

/// <summary>Maps TorchSharp element types to NCCL's.</summary>
public static class NcclDataTypes
{
    public static NcclDataType From(ScalarType dtype) => dtype switch
    {
        ScalarType.Int8 => NcclDataType.Int8,
        ScalarType.Byte => NcclDataType.Uint8,
        ScalarType.Int32 => NcclDataType.Int32,
        ScalarType.Int64 => NcclDataType.Int64,
        ScalarType.Float16 => NcclDataType.Float16,
        ScalarType.Float32 => NcclDataType.Float32,
        ScalarType.Float64 => NcclDataType.Float64,
        ScalarType.BFloat16 => NcclDataType.Bfloat16,
        // NCCL has no 16-bit integer, bool or complex type; sums of those are not what a trainer sends.
        _ => throw new NotSupportedException($"NCCL has no data type for {dtype}"),
    };
}

/// <summary>An NCCL call failed; the message carries NCCL's own error string.</summary>
public sealed class NcclException(string message) : Exception(message);

/// <summary>libnccl.so.2 cannot be loaded on this machine.</summary>
public sealed class NcclUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
