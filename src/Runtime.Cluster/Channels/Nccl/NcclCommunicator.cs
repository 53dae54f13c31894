using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Nccl;

/// <summary>
/// One rank's handle on an NCCL communicator (<c>ncclComm_t</c>). Operations are enqueued on the default CUDA stream,
/// where TorchSharp's kernels run too, so torch code after a call sees its result; reading a value on the host
/// (<c>item()</c>, <c>cpu()</c>) waits for it. NCCL refuses two ranks on one GPU: several ranks need several GPUs.
/// Point-to-point calls are matched by order per peer, not by tag: both sides must issue them in the same order
/// (group sends and receives that go both ways between <see cref="GroupStart"/> and <see cref="GroupEnd"/>).
/// </summary>
public sealed unsafe class NcclCommunicator : IDisposable
{
    IntPtr _comm;

    NcclCommunicator(IntPtr comm, int ranks, int rank)
    {
        _comm = comm;
        Ranks = ranks;
        Rank = rank;
    }

    public int Ranks { get; }
    public int Rank { get; }

    /// <summary>Rank 0 makes the id; it travels to the other ranks out of band (see <see cref="NcclCollectiveGroup"/>).</summary>
    public static NcclUniqueId CreateUniqueId()
    {
        NcclLibrary.EnsureAvailable();
        NcclUniqueId id;
        Check(NcclNative.ncclGetUniqueId(&id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>Joins the communicator; blocks until all <paramref name="ranks"/> ranks have joined with the same id.</summary>
    public static NcclCommunicator InitRank(int ranks, NcclUniqueId id, int rank)
    {
        NcclLibrary.EnsureAvailable();
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of {ranks}");
        IntPtr comm;
        Check(NcclNative.ncclCommInitRank(&comm, ranks, id, rank), $"ncclCommInitRank(rank {rank} of {ranks})");
        return new NcclCommunicator(comm, ranks, rank);
    }

    public void AllReduceInPlace(Tensor tensor, NcclRedOp op)
    {
        var (pointer, count, type) = Buffer(tensor);
        Check(NcclNative.ncclAllReduce(pointer, pointer, count, type, op, Handle, IntPtr.Zero), "ncclAllReduce");
    }

    public void BroadcastInPlace(Tensor tensor, int root)
    {
        var (pointer, count, type) = Buffer(tensor);
        Check(NcclNative.ncclBroadcast(pointer, pointer, count, type, root, Handle, IntPtr.Zero), "ncclBroadcast");
    }

    public void Send(Tensor tensor, int peer)
    {
        var (pointer, count, type) = Buffer(tensor);
        Check(NcclNative.ncclSend(pointer, count, type, peer, Handle, IntPtr.Zero), $"ncclSend(to rank {peer})");
    }

    /// <summary>Receives into <paramref name="tensor"/>, whose shape and dtype the receiver must already know.</summary>
    public void Receive(Tensor tensor, int peer)
    {
        var (pointer, count, type) = Buffer(tensor);
        Check(NcclNative.ncclRecv(pointer, count, type, peer, Handle, IntPtr.Zero), $"ncclRecv(from rank {peer})");
    }

    public static void GroupStart() => Check(NcclNative.ncclGroupStart(), "ncclGroupStart");

    public static void GroupEnd() => Check(NcclNative.ncclGroupEnd(), "ncclGroupEnd");

    public void Dispose()
    {
        if (_comm == IntPtr.Zero) return;
        var comm = _comm;
        _comm = IntPtr.Zero;
        Check(NcclNative.ncclCommDestroy(comm), "ncclCommDestroy");
    }

    IntPtr Handle => _comm != IntPtr.Zero ? _comm : throw new ObjectDisposedException(nameof(NcclCommunicator));

    static (IntPtr Pointer, nuint Count, NcclDataType Type) Buffer(Tensor tensor)
    {
        if (tensor.device_type != DeviceType.CUDA)
            throw new ArgumentException($"NCCL moves CUDA tensors only; this one lives on {tensor.device}", nameof(tensor));
        return (TensorBytes.DataPointer(tensor), (nuint)tensor.numel(), NcclDataTypes.From(tensor.dtype));
    }

    internal static void Check(NcclResult result, string call)
    {
        if (result == NcclResult.Success) return;
        var text = Marshal.PtrToStringAnsi(NcclNative.ncclGetErrorString(result)) ?? "no description";
        throw new NcclException($"{call} failed: {result} ({(int)result}): {text}");
    }
}
