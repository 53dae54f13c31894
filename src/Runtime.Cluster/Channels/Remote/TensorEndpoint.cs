using Akka.Actor;
using Akka.Event;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Receives tensor chunks from other nodes, puts each tensor back together and delivers it into the local worker's
/// inbox. One per ActorSystem at the well-known path <c>/system/tensor-endpoint</c>, so a sender needs only the node's
/// address. Every chunk is acknowledged (also one that is dropped), which returns a credit to the sender's window.
/// </summary>
internal sealed class TensorEndpoint : ReceiveActor, IWithTimers
{
    public const string Name = "tensor-endpoint";

    sealed class Sweep
    {
        public static readonly Sweep Instance = new();
    }

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly TensorRouter _router;
    readonly TensorChannelSettings _settings;
    readonly Dictionary<(IActorRef Sender, long TransferId), TensorAssembly> _assemblies = new();

    public TensorEndpoint(TensorRouter router, TensorChannelSettings settings)
    {
        _router = router;
        _settings = settings;
        Receive<TensorChunk>(OnChunk);
        Receive<Sweep>(_ => OnSweep());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(TensorRouter router, TensorChannelSettings settings) =>
        Akka.Actor.Props.Create(() => new TensorEndpoint(router, settings));

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
            var inbox = InboxFor(header);
            if (inbox is null || inbox.IsStale(header.Tag.Attempt))
            {
                Discard(key);
                return;
            }
            if (!_assemblies.TryGetValue(key, out var assembly))
            {
                assembly = TensorAssembly.Start(header);
                _assemblies.Add(key, assembly);
            }
            if (assembly.Add(chunk))
            {
                _assemblies.Remove(key);
                inbox.Deliver(header.Tag, assembly.TakeTensor());
            }
        }
        catch (Exception e)
        {
            Discard(key);
            _log.Error(e, "dropped chunk {0} of {1}", chunk.Index, header);
        }
        finally
        {
            if (!Sender.IsNobody()) Sender.Tell(new ChunkAck(header.TransferId, chunk.Index));
        }
    }

    TensorInbox? InboxFor(TransferHeader header)
    {
        try
        {
            if (_router.Resolve(header.To) is LocalRoute local) return local.Inbox;
            _log.Warning("{0} arrived here, but the router places worker {1} on another node; dropped", header, header.To);
            return null;
        }
        catch (KeyNotFoundException)
        {
            // The sender knows the worker lives here before the worker has started: keep the tensor for it.
            return _router.OpenInbox(header.To);
        }
    }

    void Discard((IActorRef, long) key)
    {
        if (_assemblies.Remove(key, out var assembly)) assembly.Dispose();
    }

    void OnSweep()
    {
        long now = Environment.TickCount64;
        foreach (var (key, assembly) in _assemblies.ToList())
        {
            var header = assembly.Header;
            bool stale = _router.FindInbox(header.To)?.IsStale(header.Tag.Attempt) ?? false;
            bool idle = now - assembly.LastTouched > (long)_settings.PartialTransferTimeout.TotalMilliseconds;
            if (!stale && !idle) continue;
            Discard(key);
            if (idle && !stale) _log.Warning("discarded {0}: no chunk for {1}", header, _settings.PartialTransferTimeout);
        }
    }

    protected override void PostStop()
    {
        foreach (var assembly in _assemblies.Values) assembly.Dispose();
        _assemblies.Clear();
    }
}
