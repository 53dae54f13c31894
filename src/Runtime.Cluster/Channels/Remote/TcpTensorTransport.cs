using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Sends tensors to other nodes over a dedicated TCP connection per node (the tensor socket), not through Akka
/// remoting: payloads go from the tensor's memory into the socket and out of the socket into the destination tensor,
/// with no managed copies, and tensors never queue on the connection that carries Akka's control messages.
/// The calling thread only queues the tensor; a writer thread per node does the rest.
/// </summary>
public sealed class TcpTensorTransport : ITensorTransport, IDisposable
{
    readonly TensorRouter _router;
    readonly TensorChannelSettings _settings;
    readonly ILoggingAdapter _log;
    readonly ConcurrentDictionary<Address, TensorSocketSender> _senders = new();
    long _lastTransferId;
    volatile bool _closed;

    internal TcpTensorTransport(TensorRouter router, TensorChannelSettings settings, ILoggingAdapter log)
    {
        _router = router;
        _settings = settings;
        _log = log;
    }

    public void Send(WorkerId to, TensorTag tag, Tensor tensor)
    {
        TensorHandOver.EnsureSendable(tag, tensor);
        if (_router.Resolve(to) is not RemoteRoute remote)
            throw new InvalidOperationException($"worker {to} is in this process; {nameof(TcpTensorTransport)} sends only to other nodes ({tag})");
        TensorWire.DTypeCode(tensor.dtype);
        ObjectDisposedException.ThrowIf(_closed, this);
        var transfer = new OutgoingTransfer(Interlocked.Increment(ref _lastTransferId), to, tag,
            AkkaRemoteTransport.ToWireTensor(tensor), _settings.ChunkSize);
        _senders.GetOrAdd(remote.Node, node => new TensorSocketSender(node, remote.Endpoint, _settings.ConnectTimeout, _log))
            .Enqueue(transfer);
    }

    /// <summary>Drops what is queued for <paramref name="run"/> from attempts older than <paramref name="attempt"/>.</summary>
    public void DropStale(string run, long attempt)
    {
        foreach (var sender in _senders.Values) sender.DropStale(run, attempt);
    }

    public void Dispose()
    {
        _closed = true;
        foreach (var sender in _senders.Values) sender.Dispose();
        _senders.Clear();
    }
}
