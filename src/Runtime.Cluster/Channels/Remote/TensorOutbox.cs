using Akka.Actor;
using Akka.Event;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Sends tensors to other nodes' <see cref="TensorEndpoint"/>s, one chunk at a time under a credit window. One per
/// ActorSystem, at <c>/system/tensor-outbox</c>.
/// <para>
/// Why a window: Akka remoting has one TCP connection per pair of nodes, and everything to a node queues on it in
/// order. Telling all 64 chunks of a 64 MiB gradient at once would put every control message (heartbeats, step
/// commands) behind 64 MiB. With at most <c>window</c> unacknowledged chunks per node, a control message waits behind
/// at most window x chunk-size bytes. Transfers to one node take turns chunk by chunk, so a scalar all-reduce is not
/// stuck behind a big tensor either.
/// </para>
/// </summary>
internal sealed class TensorOutbox : ReceiveActor
{
    public const string Name = "tensor-outbox";

    /// <summary>Send <paramref name="Tensor"/> (owned by the outbox from now on) to <paramref name="To"/> via <paramref name="Endpoint"/>.</summary>
    public sealed record Enqueue(IActorRef Endpoint, WorkerId To, TensorTag Tag, Tensor Tensor);

    /// <summary>Drop what is queued for <paramref name="Run"/> from attempts older than <paramref name="Attempt"/>.</summary>
    public sealed record DropStale(string Run, long Attempt);

    sealed class Lane(IActorRef endpoint)
    {
        public IActorRef Endpoint { get; } = endpoint;
        public Queue<OutgoingTransfer> Ready { get; } = new();
        public int InFlight { get; set; }
    }

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly TensorChannelSettings _settings;
    readonly Dictionary<IActorRef, Lane> _lanes = new();
    readonly Dictionary<long, (Lane Lane, OutgoingTransfer Transfer)> _transfers = new();
    long _lastTransferId;

    public TensorOutbox(TensorChannelSettings settings)
    {
        _settings = settings;
        Receive<Enqueue>(OnEnqueue);
        Receive<ChunkAck>(OnAck);
        Receive<DropStale>(OnDropStale);
        Receive<Terminated>(OnEndpointGone);
    }

    public static Props Props(TensorChannelSettings settings) => Akka.Actor.Props.Create(() => new TensorOutbox(settings));

    void OnEnqueue(Enqueue message)
    {
        OutgoingTransfer transfer;
        try
        {
            transfer = new OutgoingTransfer(++_lastTransferId, message.To, message.Tag, message.Tensor, _settings.ChunkSize);
        }
        catch (Exception e)
        {
            message.Tensor.Dispose();
            _log.Error(e, "cannot send {0} to {1}", message.Tag, message.To);
            return;
        }
        if (!_lanes.TryGetValue(message.Endpoint, out var lane))
        {
            lane = new Lane(message.Endpoint);
            _lanes.Add(message.Endpoint, lane);
            Context.Watch(message.Endpoint);
        }
        lane.Ready.Enqueue(transfer);
        _transfers.Add(transfer.Header.TransferId, (lane, transfer));
        Pump(lane);
    }

    void OnAck(ChunkAck ack)
    {
        // Acks of dropped transfers find nothing: their credits were returned when they were dropped.
        if (!_transfers.TryGetValue(ack.TransferId, out var entry)) return;
        var (lane, transfer) = entry;
        lane.InFlight--;
        transfer.Unacked--;
        if (transfer.AllFramed && transfer.Unacked == 0) _transfers.Remove(ack.TransferId);
        Pump(lane);
    }

    void Pump(Lane lane)
    {
        while (lane.InFlight < _settings.Window && lane.Ready.TryDequeue(out var transfer))
        {
            TensorChunk chunk;
            try
            {
                chunk = transfer.NextChunk();
            }
            catch (Exception e)
            {
                _log.Error(e, "cannot cut a chunk of {0}", transfer.Header);
                Forget(lane, transfer);
                continue;
            }
            lane.Endpoint.Tell(chunk, Self);
            lane.InFlight++;
            transfer.Unacked++;
            if (!transfer.AllFramed) lane.Ready.Enqueue(transfer);
        }
    }

    void OnDropStale(DropStale message)
    {
        var stale = _transfers.Values
            .Where(e => e.Transfer.Header.Tag.Run == message.Run && e.Transfer.Header.Tag.Attempt < message.Attempt)
            .ToList();
        foreach (var (lane, transfer) in stale) Forget(lane, transfer);
        if (stale.Count > 0) _log.Info("dropped {0} outgoing transfers of run {1} older than attempt {2}", stale.Count, message.Run, message.Attempt);
        foreach (var lane in _lanes.Values) Pump(lane);
    }

    void OnEndpointGone(Terminated message)
    {
        // The node is gone (quarantined or downed): nothing queued for it will ever be acknowledged.
        if (!_lanes.Remove(message.ActorRef, out var lane)) return;
        var lost = _transfers.Values.Where(e => e.Lane == lane).ToList();
        foreach (var (_, transfer) in lost) Forget(lane, transfer);
        if (lost.Count > 0) _log.Warning("tensor endpoint {0} is gone; dropped {1} transfers to it", message.ActorRef.Path, lost.Count);
    }

    /// <summary>Stops sending <paramref name="transfer"/>, disposes its tensor and returns its unacknowledged credits.</summary>
    void Forget(Lane lane, OutgoingTransfer transfer)
    {
        _transfers.Remove(transfer.Header.TransferId);
        lane.InFlight -= transfer.Unacked;
        transfer.Unacked = 0;
        transfer.Dispose();
        if (lane.Ready.Contains(transfer))
        {
            var keep = lane.Ready.Where(t => t != transfer).ToList();
            lane.Ready.Clear();
            foreach (var t in keep) lane.Ready.Enqueue(t);
        }
    }

    protected override void PostStop()
    {
        foreach (var (_, transfer) in _transfers.Values) transfer.Dispose();
        _transfers.Clear();
        _lanes.Clear();
    }
}
