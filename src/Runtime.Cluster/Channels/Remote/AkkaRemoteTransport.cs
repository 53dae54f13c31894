using Akka.Actor;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Sends a tensor to a worker on another node: the tensor is handed to the node's <see cref="TensorOutbox"/>, which
/// cuts it into chunks (binary frames, see <see cref="TensorChunk"/>) for the destination node's
/// <see cref="TensorEndpoint"/>. The calling thread only detaches the tensor (and makes it a contiguous CPU tensor if
/// it is not one); copying happens on the outbox's thread, so the sender must leave the values alone (see
/// <see cref="ITensorTransport"/>).
/// </summary>
public sealed class AkkaRemoteTransport(TensorRouter router, IActorRef outbox) : ITensorTransport
{
    public void Send(WorkerId to, TensorTag tag, Tensor tensor)
    {
        TensorHandOver.EnsureSendable(tag, tensor);
        if (router.Resolve(to) is not RemoteRoute remote)
            throw new InvalidOperationException($"worker {to} is in this process; {nameof(AkkaRemoteTransport)} sends only to other nodes ({tag})");
        TensorWire.DTypeCode(tensor.dtype); // refuses element types the wire cannot carry, here on the sender's thread
        outbox.Tell(new TensorOutbox.Enqueue(remote.Endpoint, to, tag, ToWireTensor(tensor)));
    }

    /// <summary>
    /// Takes ownership of <paramref name="tensor"/> and returns it detached from any dispose scope as a contiguous CPU
    /// tensor: the same object when it already is one, else a copy (the original is disposed).
    /// </summary>
    internal static Tensor ToWireTensor(Tensor tensor)
    {
        tensor.DetachFromDisposeScope();
        var wire = tensor;
        if (wire.device_type != DeviceType.CPU) wire = Replace(wire, wire.cpu());
        if (!wire.is_contiguous()) wire = Replace(wire, wire.contiguous());
        return wire;
    }

    static Tensor Replace(Tensor old, Tensor replacement)
    {
        replacement.DetachFromDisposeScope();
        old.Dispose();
        return replacement;
    }
}
