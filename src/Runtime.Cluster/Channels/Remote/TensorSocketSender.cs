using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// The tensor socket to one other node: a queue of transfers and a thread that writes them, one chunk at a time in
/// turn, so a small tensor is not stuck behind a big one. TCP's own flow control paces the writer. The socket is
/// opened on first use (the node's tensor endpoint says which port) and again after a failure; a failure drops what
/// was queued, since a half-sent tensor cannot be finished on a new connection.
/// </summary>
internal sealed class TensorSocketSender : IDisposable
{
    readonly Address _node;
    readonly IActorRef _endpoint;
    readonly TimeSpan _connectTimeout;
    readonly ILoggingAdapter _log;
    readonly object _gate = new();
    readonly Queue<OutgoingTransfer> _ready = new();
    readonly byte[] _scratch = new byte[TensorSocket.ScratchLength];
    OutgoingTransfer? _writing;
    bool _dropWriting;
    bool _closed;
    TcpClient? _client;
    NetworkStream? _stream;

    public TensorSocketSender(Address node, IActorRef endpoint, TimeSpan connectTimeout, ILoggingAdapter log)
    {
        _node = node;
        _endpoint = endpoint;
        _connectTimeout = connectTimeout;
        _log = log;
        new Thread(WriteLoop) { IsBackground = true, Name = $"tensor-socket-write:{node}" }.Start();
    }

    public void Enqueue(OutgoingTransfer transfer)
    {
        lock (_gate)
        {
            if (_closed)
            {
                transfer.Dispose();
                throw new ObjectDisposedException($"the tensor socket to {_node} is closed");
            }
            _ready.Enqueue(transfer);
            Monitor.Pulse(_gate);
        }
    }

    /// <summary>Drops queued transfers of <paramref name="run"/> older than <paramref name="attempt"/>.</summary>
    public int DropStale(string run, long attempt)
    {
        bool Stale(OutgoingTransfer t) => t.Header.Tag.Run == run && t.Header.Tag.Attempt < attempt;
        lock (_gate)
        {
            var stale = _ready.Where(Stale).ToList();
            var keep = _ready.Where(t => !Stale(t)).ToList();
            _ready.Clear();
            foreach (var t in keep) _ready.Enqueue(t);
            foreach (var t in stale) t.Dispose();
            if (_writing is not null && Stale(_writing)) _dropWriting = true;
            return stale.Count + (_dropWriting ? 1 : 0);
        }
    }

    void WriteLoop()
    {
        while (true)
        {
            OutgoingTransfer transfer;
            lock (_gate)
            {
                while (_ready.Count == 0 && !_closed) Monitor.Wait(_gate);
                if (_closed) return;
                transfer = _ready.Dequeue();
                _writing = transfer;
                _dropWriting = false;
            }
            try
            {
                transfer.WriteNextChunk(Connect(), _scratch);
            }
            catch (Exception e)
            {
                Fail(transfer, e);
                continue;
            }
            lock (_gate)
            {
                _writing = null;
                if (_dropWriting || _closed) transfer.Dispose();
                else if (!transfer.AllFramed) _ready.Enqueue(transfer);
            }
        }
    }

    NetworkStream Connect()
    {
        if (_stream is not null) return _stream;
        var port = _endpoint.Ask<SocketPort>(SocketPortQuery.Instance, _connectTimeout).GetAwaiter().GetResult().Port;
        if (port == 0) throw new InvalidOperationException($"the node at {_node} has no tensor socket (remoting is off there)");
        var client = new TcpClient { NoDelay = true };
        try
        {
            if (!client.ConnectAsync(_node.Host!, port).Wait(_connectTimeout))
                throw new TimeoutException($"connecting to the tensor socket {_node.Host}:{port} took longer than {_connectTimeout}");
            var stream = client.GetStream();
            stream.Write(TensorSocket.Preamble);
            _client = client;
            _stream = stream;
            return stream;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    void Fail(OutgoingTransfer transfer, Exception error)
    {
        List<OutgoingTransfer> lost;
        lock (_gate)
        {
            _writing = null;
            lost = [transfer, .. _ready];
            _ready.Clear();
        }
        foreach (var t in lost) t.Dispose();
        _stream?.Dispose();
        _client?.Dispose();
        _stream = null;
        _client = null;
        if (!_closed) _log.Error(error, "tensor socket to {0} failed; dropped {1} transfers", _node, lost.Count);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            foreach (var t in _ready) t.Dispose();
            _ready.Clear();
            Monitor.PulseAll(_gate);
        }
        // Closing the socket also unblocks a writer stuck in a full send buffer.
        _stream?.Dispose();
        _client?.Dispose();
    }
}
