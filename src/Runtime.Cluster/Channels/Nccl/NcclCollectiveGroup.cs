using Runtime.Cluster.Channels.Collectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Nccl;

/// <summary>
/// Collectives of CUDA tensors through NCCL. NCCL's sum order follows its ring/tree schedule, not member order, so
/// results can differ in the last bits from <see cref="DirectCollectiveGroup"/>'s (each element is still reduced once
/// and the reduced value distributed, so members agree with each other).
/// <para>
/// Setting up: member 0 makes the NCCL unique id and sends its 128 bytes to every other member as a
/// <see cref="TensorKind.Bootstrap"/> tensor over the ordinary channels (an Akka message between nodes); the others
/// wait for it in their inbox; then all join the communicator.
/// </para>
/// </summary>
public sealed class NcclCollectiveGroup : ICollectiveGroup, IDisposable
{
    readonly NcclCommunicator _communicator;
    readonly Device _device;

    NcclCollectiveGroup(GroupKind kind, IReadOnlyList<WorkerId> members, int rank, NcclCommunicator communicator, Device device)
    {
        Kind = kind;
        Members = members;
        Rank = rank;
        _communicator = communicator;
        _device = device;
    }

    public GroupKind Kind { get; }
    public IReadOnlyList<WorkerId> Members { get; }
    public int Rank { get; }

    /// <summary>
    /// Sets up the group on every member (each calls this on its worker thread with the same
    /// <paramref name="setupKey"/>): the unique id goes from member 0 to the others through
    /// <paramref name="transport"/> and <paramref name="inbox"/>.
    /// </summary>
    public static NcclCollectiveGroup Create(GroupKind kind, IReadOnlyList<WorkerId> members, WorkerId self, Device device,
        TensorInbox inbox, ITensorTransport transport, CollectiveKey setupKey, TimeSpan receiveTimeout,
        CancellationToken cancellationToken = default)
    {
        NcclLibrary.EnsureAvailable();
        if (device.type != DeviceType.CUDA) throw new ArgumentException($"NCCL collectives need a CUDA device, got {device}", nameof(device));
        int rank = members.ToList().IndexOf(self);
        if (rank < 0) throw new ArgumentException($"worker {self} is not a member of the {kind} group {string.Join(", ", members)}", nameof(self));
        TensorTag Tag(WorkerId source) =>
            new(setupKey.Attempt, setupKey.Step, setupKey.MicroBatch, TensorKind.Bootstrap, source, kind, setupKey.Sequence);

        NcclUniqueId id;
        if (rank == 0)
        {
            id = NcclCommunicator.CreateUniqueId();
            var bytes = id.ToArray();
            for (int j = 1; j < members.Count; j++)
                transport.Send(members[j], Tag(self), torch.tensor(bytes, ScalarType.Byte));
        }
        else
        {
            using var bytes = inbox.Take(Tag(members[0]), receiveTimeout, cancellationToken);
            id = NcclUniqueId.FromBytes(bytes.data<byte>().ToArray());
        }
        return new NcclCollectiveGroup(kind, members.ToArray(), rank, NcclCommunicator.InitRank(members.Count, id, rank), device);
    }

    public void AllReduceSumInPlace(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _communicator.AllReduceInPlace(tensor, NcclRedOp.Sum);
    }

    public Tensor AllReduceSum(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        Tensor result;
        using (var scope = torch.NewDisposeScope())
            result = tensor.detach().contiguous().clone().MoveToOuterDisposeScope();
        AllReduceSumInPlace(result, key, cancellationToken);
        return result;
    }

    public double AllReduceSum(double value, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        using var scalar = torch.tensor(new[] { value }, ScalarType.Float64, _device);
        AllReduceSumInPlace(scalar, key, cancellationToken);
        return scalar.item<double>();
    }

    public void BroadcastInPlace(Tensor tensor, int root, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        _communicator.BroadcastInPlace(tensor, root);
    }

    public void Dispose() => _communicator.Dispose();
}
