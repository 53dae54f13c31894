using System.Runtime.InteropServices;

namespace Runtime.Cluster.Channels.Nccl;

/// <summary>
/// P/Invoke declarations for libnccl.so.2 (signatures from nccl.h). <c>ncclComm_t</c> and <c>cudaStream_t</c> are
/// pointers; TorchSharp has no CUDA stream API, so callers pass <see cref="IntPtr.Zero"/>, the default stream that
/// TorchSharp's own kernels run on, which keeps NCCL ordered with them. Call <see cref="NcclLibrary.EnsureAvailable()"/>
/// first: a missing library then fails with a message that says what to do, not a bare DllNotFoundException.
/// </summary>
internal static unsafe class NcclNative
{
    public const string Library = "libnccl.so.2";

    [DllImport(Library)] public static extern NcclResult ncclGetUniqueId(NcclUniqueId* uniqueId);

    [DllImport(Library)] public static extern NcclResult ncclCommInitRank(IntPtr* comm, int nranks, NcclUniqueId commId, int rank);

    [DllImport(Library)] public static extern NcclResult ncclCommDestroy(IntPtr comm);

    [DllImport(Library)]
    public static extern NcclResult ncclAllReduce(IntPtr sendbuff, IntPtr recvbuff, nuint count, NcclDataType datatype,
        NcclRedOp op, IntPtr comm, IntPtr stream);

    [DllImport(Library)]
    public static extern NcclResult ncclBroadcast(IntPtr sendbuff, IntPtr recvbuff, nuint count, NcclDataType datatype,
        int root, IntPtr comm, IntPtr stream);

    [DllImport(Library)]
    public static extern NcclResult ncclAllGather(IntPtr sendbuff, IntPtr recvbuff, nuint sendcount, NcclDataType datatype,
        IntPtr comm, IntPtr stream);

    [DllImport(Library)]
    public static extern NcclResult ncclReduceScatter(IntPtr sendbuff, IntPtr recvbuff, nuint recvcount, NcclDataType datatype,
        NcclRedOp op, IntPtr comm, IntPtr stream);

    [DllImport(Library)]
    public static extern NcclResult ncclSend(IntPtr sendbuff, nuint count, NcclDataType datatype, int peer, IntPtr comm, IntPtr stream);

    [DllImport(Library)]
    public static extern NcclResult ncclRecv(IntPtr recvbuff, nuint count, NcclDataType datatype, int peer, IntPtr comm, IntPtr stream);

    [DllImport(Library)] public static extern NcclResult ncclGroupStart();

    [DllImport(Library)] public static extern NcclResult ncclGroupEnd();

    [DllImport(Library)] public static extern IntPtr ncclGetErrorString(NcclResult result);
}
