using System.Collections.Concurrent;
using Akka.Actor;

namespace Runtime.Cluster.Channels;

/// <summary>Where a worker's tensors go.</summary>
public abstract record TensorRoute;

/// <summary>The worker lives in this process: deliver into its inbox.</summary>
public sealed record LocalRoute(TensorInbox Inbox) : TensorRoute;

/// <summary>The worker lives on <paramref name="Node"/>: send chunks to that node's tensor endpoint.</summary>
public sealed record RemoteRoute(Address Node, IActorRef Endpoint) : TensorRoute;

/// <summary>
/// The directory of workers: local ones have an inbox here, remote ones a node address. Placement fills it in (the
/// run's worker layout says which node hosts which worker); transports and the tensor endpoint read it. Thread-safe.
/// </summary>
public sealed class TensorRouter : IDisposable
{
    readonly ConcurrentDictionary<WorkerId, TensorInbox> _local = new();
    readonly ConcurrentDictionary<WorkerId, RemoteRoute> _remote = new();
    readonly ConcurrentDictionary<Address, IActorRef> _endpoints = new();
    readonly Func<Address, IActorRef>? _endpointAt;

    /// <param name="endpointAt">Finds a node's tensor endpoint; null for a router that only knows local workers.</param>
    public TensorRouter(Func<Address, IActorRef>? endpointAt = null) => _endpointAt = endpointAt;

    /// <summary>
    /// The inbox of a worker hosted here, created on first use. The tensor endpoint calls this too: a peer may send
    /// to a worker before that worker has started, and what it sends waits in the inbox.
    /// </summary>
    public TensorInbox OpenInbox(WorkerId worker) => _local.GetOrAdd(worker, w => new TensorInbox(w));

    public TensorInbox? FindInbox(WorkerId worker) => _local.GetValueOrDefault(worker);

    /// <summary>The inboxes hosted here (a snapshot).</summary>
    public IReadOnlyCollection<TensorInbox> LocalInboxes => _local.Values.ToList();

    /// <summary>Removes a local worker's inbox and disposes what it still holds.</summary>
    public void CloseInbox(WorkerId worker)
    {
        if (_local.TryRemove(worker, out var inbox)) inbox.Dispose();
    }

    /// <summary>Records that <paramref name="worker"/> lives on the node at <paramref name="node"/>.</summary>
    public void SetRemote(WorkerId worker, Address node)
    {
        if (_endpointAt is null) throw new InvalidOperationException($"this router has no way to reach other nodes; cannot place {worker} on {node}");
        SetRemote(worker, node, _endpoints.GetOrAdd(node, _endpointAt));
    }

    /// <summary>Records that <paramref name="worker"/> lives on <paramref name="node"/>, whose tensor endpoint is <paramref name="endpoint"/>.</summary>
    public void SetRemote(WorkerId worker, Address node, IActorRef endpoint)
    {
        if (_local.ContainsKey(worker)) throw new InvalidOperationException($"worker {worker} has an inbox on this node; close it before placing the worker on {node}");
        _remote[worker] = new RemoteRoute(node, endpoint);
    }

    /// <summary>Forgets where a remote worker lives (it moved or its run ended).</summary>
    public void ForgetRemote(WorkerId worker) => _remote.TryRemove(worker, out _);

    /// <summary>Where tensors for <paramref name="worker"/> go; local inboxes win over remote entries.</summary>
    public TensorRoute Resolve(WorkerId worker)
    {
        if (_local.TryGetValue(worker, out var inbox)) return new LocalRoute(inbox);
        if (_remote.TryGetValue(worker, out var route)) return route;
        throw new KeyNotFoundException($"no route to worker {worker}: it has no inbox on this node and placement has not named its node");
    }

    public void Dispose()
    {
        foreach (var worker in _local.Keys) CloseInbox(worker);
        _remote.Clear();
    }
}
