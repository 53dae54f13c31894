using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Akka.Event;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Accepts tensor sockets from other nodes' <see cref="TcpTensorTransport"/>s and reads each on its own thread, payloads
/// straight into the destination tensor's memory, delivering finished tensors into local inboxes. A node always
/// listens (when remoting is on), whichever way it sends itself, so nodes configured differently still reach it.
/// </summary>
internal sealed class TensorSocketListener : IDisposable
{
    readonly TensorRouter _router;
    readonly TensorChannelSettings _settings;
    readonly ILoggingAdapter _log;
    readonly TcpListener _listener;
    readonly ConcurrentDictionary<TcpClient, byte> _connections = new();
    volatile bool _closed;

    public TensorSocketListener(TensorRouter router, TensorChannelSettings settings, IPAddress bindTo, int port, ILoggingAdapter log)
    {
        _router = router;
        _settings = settings;
        _log = log;
        _listener = new TcpListener(bindTo, port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        new Thread(AcceptLoop) { IsBackground = true, Name = $"tensor-socket-accept:{Port}" }.Start();
    }

    public int Port { get; }

    void AcceptLoop()
    {
        while (!_closed)
        {
            TcpClient client;
            try
            {
                client = _listener.AcceptTcpClient();
            }
            catch (Exception) when (_closed)
            {
                return;
            }
            catch (SocketException e)
            {
                _log.Warning("tensor socket accept failed: {0}", e.Message);
                continue;
            }
            client.NoDelay = true;
            _connections.TryAdd(client, 0);
            new Thread(() => ReadLoop(client)) { IsBackground = true, Name = "tensor-socket-read" }.Start();
        }
    }

    void ReadLoop(TcpClient client)
    {
        var peer = client.Client.RemoteEndPoint?.ToString() ?? "an unknown peer";
        var sink = new ChunkSink<long>(_router, _settings.PartialTransferTimeout, _log);
        var scratch = new byte[TensorSocket.ScratchLength];
        long lastSweep = Environment.TickCount64;
        try
        {
            using var stream = client.GetStream();
            TensorSocket.ReadPreamble(stream);
            while (TensorSocket.TryReadLengths(stream, scratch, out int headerLength, out int payloadLength))
            {
                stream.ReadExactly(scratch, 0, headerLength);
                var (header, index, offset, _) = TensorChunk.ReadHeader(scratch.AsSpan(0, headerLength));
                TensorChunk.Validate(header, index, offset, payloadLength);
                var assembly = sink.Accept(header.TransferId, header);
                if (assembly is null)
                    Skip(stream, payloadLength, scratch);
                else
                {
                    stream.ReadExactly(assembly.Reserve(header, index, offset, payloadLength));
                    if (assembly.Commit(index, payloadLength)) Deliver(sink, header);
                }
                if (Environment.TickCount64 - lastSweep > 10_000)
                {
                    // A sender that dropped a stale transfer half-way leaves its beginning here; the next traffic cleans up.
                    sink.Sweep();
                    lastSweep = Environment.TickCount64;
                }
            }
        }
        catch (Exception e) when (!_closed)
        {
            _log.Warning("tensor socket from {0} failed, {1} half-received tensors dropped: {2}", peer, sink.PartialCount, e.Message);
        }
        catch (Exception)
        {
            // closing down
        }
        finally
        {
            sink.Dispose();
            _connections.TryRemove(client, out _);
            client.Dispose();
        }
    }

    void Deliver(ChunkSink<long> sink, TransferHeader header)
    {
        try
        {
            sink.Deliver(header.TransferId);
        }
        catch (Exception e)
        {
            _log.Error(e, "could not deliver {0}", header);
        }
    }

    static void Skip(Stream stream, int length, byte[] scratch)
    {
        while (length > 0)
        {
            int read = stream.Read(scratch, 0, Math.Min(length, scratch.Length));
            if (read == 0) throw new EndOfStreamException("tensor socket closed in the middle of a payload");
            length -= read;
        }
    }

    public void Dispose()
    {
        _closed = true;
        _listener.Stop();
        foreach (var client in _connections.Keys) client.Dispose();
    }
}
