using Akka.Actor;
using Akka.Event;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Receives tensor chunks from other nodes, puts each tensor back together and delivers it into the local worker's
/// inbox. One per ActorSystem at the well-known path <c>/system/tensor-endpoint</c>, so a sender needs only the node's
/// address. It also tells senders the port of this node's tensor socket (<see cref="TensorSocketListener"/>).
/// Every chunk is acknowledged (also one that is dropped), which returns a credit to the sender's window.
/// </summary>
internal sealed class TensorEndpoint : ReceiveActor, IWithTimers
{
    public const string Name = "tensor-endpoint";

    sealed class Sweep
    {
        public static readonly Sweep Instance = new();
    }

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly TensorChannelSettings _settings;
    readonly ChunkSink<(IActorRef Sender, long TransferId)> _sink;

    public TensorEndpoint(TensorRouter router, TensorChannelSettings settings, int socketPort)
    {
        _settings = settings;
        _sink = new(router, settings.PartialTransferTimeout, _log);
        Receive<TensorChunk>(OnChunk);
        Receive<Sweep>(_ => _sink.Sweep());
        Receive<SocketPortQuery>(_ => Sender.Tell(new SocketPort(socketPort)));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(TensorRouter router, TensorChannelSettings settings, int socketPort) =>
        Akka.Actor.Props.Create(() => new TensorEndpoint(router, settings, socketPort));

    /// <summary>The endpoint's path on the node at <paramref name="node"/>.</summary>
    public static ActorPath PathAt(Address node) => new RootActorPath(node) / "system" / Name;

    protected override void PreStart()
    {
        var every = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, _settings.PartialTransferTimeout.Ticks / 4));
        Timers.StartPeriodicTimer("sweep", Sweep.Instance, every);
    }

    void OnChunk(TensorChunk chunk)
    {
        var header = chunk.Header;
        var key = (Sender, header.TransferId);
        try
        {
            if (_sink.Accept(key, header)?.Add(chunk) == true) _sink.Deliver(key);
        }
        catch (Exception e)
        {
            _sink.Discard(key);
            _log.Error(e, "dropped chunk {0} of {1}", chunk.Index, header);
        }
        finally
        {
            if (!Sender.IsNobody()) Sender.Tell(new ChunkAck(header.TransferId, chunk.Index));
        }
    }

    protected override void PostStop() => _sink.Dispose();
}
