using Akka.Event;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// The receiving end of one stream of chunks (the tensor endpoint actor's, or one tensor socket's): finds the inbox of
/// each transfer's worker, assembles the tensor and delivers it. Chunks of a stale attempt are dropped before any
/// memory is allocated for them. Not thread-safe: each stream owns one.
/// </summary>
internal sealed class ChunkSink<TKey>(TensorRouter router, TimeSpan idleLimit, ILoggingAdapter log) : IDisposable
    where TKey : notnull
{
    readonly Dictionary<TKey, TensorAssembly> _assemblies = new();

    public int PartialCount => _assemblies.Count;

    /// <summary>The assembly chunk <paramref name="header"/> goes into, started if needed; null when the transfer is dropped.</summary>
    public TensorAssembly? Accept(TKey key, TransferHeader header)
    {
        var inbox = InboxFor(header);
        if (inbox is null || inbox.IsStale(header.Tag.Attempt))
        {
            Discard(key);
            return null;
        }
        if (!_assemblies.TryGetValue(key, out var assembly))
        {
            assembly = TensorAssembly.Start(header);
            _assemblies.Add(key, assembly);
        }
        return assembly;
    }

    /// <summary>Hands a completed tensor to its worker's inbox.</summary>
    public void Deliver(TKey key)
    {
        if (!_assemblies.Remove(key, out var assembly)) return;
        var header = assembly.Header;
        router.OpenInbox(header.To).Deliver(header.Tag, assembly.TakeTensor());
    }

    public void Discard(TKey key)
    {
        if (_assemblies.Remove(key, out var assembly)) assembly.Dispose();
    }

    /// <summary>Drops half-received tensors of stale attempts, and those whose sender went quiet longer than the idle limit.</summary>
    public void Sweep()
    {
        long now = Environment.TickCount64;
        foreach (var (key, assembly) in _assemblies.ToList())
        {
            var header = assembly.Header;
            bool stale = router.FindInbox(header.To)?.IsStale(header.Tag.Attempt) ?? false;
            bool idle = now - assembly.LastTouched > (long)idleLimit.TotalMilliseconds;
            if (!stale && !idle) continue;
            Discard(key);
            if (!stale) log.Warning("discarded {0}: no chunk for {1}", header, idleLimit);
        }
    }

    TensorInbox? InboxFor(TransferHeader header)
    {
        try
        {
            if (router.Resolve(header.To) is LocalRoute local) return local.Inbox;
            log.Warning("{0} arrived here, but the router places worker {1} on another node; dropped", header, header.To);
            return null;
        }
        catch (KeyNotFoundException)
        {
            // The sender knows the worker lives here before the worker has started: keep the tensor for it.
            return router.OpenInbox(header.To);
        }
    }

    public void Dispose()
    {
        foreach (var assembly in _assemblies.Values) assembly.Dispose();
        _assemblies.Clear();
    }
}
