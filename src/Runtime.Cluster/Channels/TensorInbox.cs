using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>
/// The tensors addressed to one local worker, keyed by <see cref="TensorTag"/>. Anything may deliver from any thread;
/// the worker blocks on its own (pinned) thread in <see cref="Take"/> until the exact tag it needs is here. Tensors never
/// pass through the worker's actor mailbox: the worker runs a whole step inside one message handler, so a tensor queued
/// behind that handler could never be read by it.
/// <para>
/// Attempts: tags older than <see cref="Attempt"/> are stale; they are disposed when delivered and when the attempt
/// moves on (<see cref="Reset"/>), and waiting for one fails at once. <see cref="Cancel"/> kills the current attempt:
/// blocked and later waits for it throw <see cref="OperationCanceledException"/> (how the coordinator aborts a step),
/// and its tensors are dropped. Tags of a newer attempt are kept: a faster peer may start the next attempt before this
/// worker hears of it.
/// </para>
/// <para>Ownership: the inbox owns what it holds (outside any dispose scope); <see cref="Take"/> hands the tensor to the
/// caller and attaches it to the caller's current dispose scope, if there is one.</para>
/// </summary>
public sealed class TensorInbox : IDisposable
{
    readonly object _gate = new();
    readonly Dictionary<TensorTag, Tensor> _held = new();
    long _attempt;
    bool _cancelled;
    bool _closed;
    long _dropped;

    public TensorInbox(WorkerId owner, long attempt = 0)
    {
        Owner = owner ?? throw new ArgumentNullException(nameof(owner));
        _attempt = attempt;
    }

    public WorkerId Owner { get; }

    /// <summary>The current attempt; tags of older attempts are stale.</summary>
    public long Attempt { get { lock (_gate) return _attempt; } }

    /// <summary>Whether <see cref="Cancel"/> killed the current attempt.</summary>
    public bool IsCancelled { get { lock (_gate) return _cancelled; } }

    /// <summary>How many tensors are held, waiting for a <see cref="Take"/>.</summary>
    public int Count { get { lock (_gate) return _held.Count; } }

    /// <summary>Whether a tensor of <paramref name="attempt"/> would be dropped: older than the current attempt, or the current one cancelled.</summary>
    public bool IsStale(long attempt) { lock (_gate) return IsStaleLocked(attempt); }

    /// <summary>The tags of the tensors held now (a snapshot, for diagnostics).</summary>
    public IReadOnlyList<TensorTag> HeldTags { get { lock (_gate) return _held.Keys.ToList(); } }

    /// <summary>How many tensors were disposed unread because their attempt was stale or cancelled.</summary>
    public long DroppedCount { get { lock (_gate) return _dropped; } }

    /// <summary>
    /// Hands <paramref name="tensor"/> to the inbox, which owns it from now on (it is detached from the caller's dispose
    /// scope). Returns false when the tag's attempt is stale or cancelled: the tensor was disposed. Throws, after
    /// disposing the tensor, for a tag of another run or a tag already held (both are bugs of the sender).
    /// </summary>
    public bool Deliver(TensorTag tag, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tag);
        ArgumentNullException.ThrowIfNull(tensor);
        tensor.DetachFromDisposeScope();
        lock (_gate)
        {
            if (_closed || IsStaleLocked(tag.Attempt))
            {
                _dropped++;
                tensor.Dispose();
                return false;
            }
            if (tag.Run != Owner.Run)
            {
                tensor.Dispose();
                throw new ArgumentException($"{tag} belongs to run '{tag.Run}', but this inbox is worker {Owner}'s", nameof(tag));
            }
            if (!_held.TryAdd(tag, tensor))
            {
                tensor.Dispose();
                throw new InvalidOperationException($"worker {Owner} already holds {tag}: a tag must be sent once");
            }
            Monitor.PulseAll(_gate);
            return true;
        }
    }

    /// <summary>
    /// Blocks the calling thread until <paramref name="tag"/> arrives and returns it (attached to the caller's current
    /// dispose scope). Throws <see cref="TimeoutException"/> after <paramref name="timeout"/>
    /// (<see cref="Timeout.InfiniteTimeSpan"/> waits forever), and <see cref="OperationCanceledException"/> when the
    /// token is cancelled, the tag's attempt is stale, or the attempt was cancelled.
    /// </summary>
    public Tensor Take(TensorTag tag, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tag);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "must be >= 0 or Timeout.InfiniteTimeSpan");
        var clock = Stopwatch.StartNew();
        using var wake = cancellationToken.CanBeCanceled
            ? cancellationToken.Register(() => { lock (_gate) Monitor.PulseAll(_gate); })
            : default;
        lock (_gate)
        {
            while (true)
            {
                ObjectDisposedException.ThrowIf(_closed, this);
                if (IsStaleLocked(tag.Attempt))
                    throw new OperationCanceledException(
                        $"worker {Owner} stopped waiting for {tag}: attempt {_attempt}{(_cancelled ? " was cancelled" : " is current")}");
                if (_held.Remove(tag, out var tensor))
                {
                    torch.CurrentDisposeScope?.Attach(tensor);
                    return tensor;
                }
                if (cancellationToken.IsCancellationRequested)
                    throw new OperationCanceledException($"worker {Owner} stopped waiting for {tag}: cancelled", cancellationToken);
                var left = timeout == Timeout.InfiniteTimeSpan ? Timeout.InfiniteTimeSpan : timeout - clock.Elapsed;
                if (left != Timeout.InfiniteTimeSpan && left <= TimeSpan.Zero)
                    throw new TimeoutException($"worker {Owner} waited {timeout} for {tag}; it holds {Describe()}");
                Monitor.Wait(_gate, left);
            }
        }
    }

    /// <summary>Takes <paramref name="tag"/> if it is already here; never blocks.</summary>
    public bool TryTake(TensorTag tag, out Tensor? tensor)
    {
        lock (_gate)
        {
            if (!_closed && !IsStaleLocked(tag.Attempt) && _held.Remove(tag, out tensor))
            {
                torch.CurrentDisposeScope?.Attach(tensor);
                return true;
            }
            tensor = null;
            return false;
        }
    }

    /// <summary>
    /// Moves to <paramref name="attempt"/> (attempts only grow; the same number again changes nothing): held tensors of
    /// older attempts are disposed, waits for them fail, and a cancellation of the previous attempt is over.
    /// </summary>
    public void Reset(long attempt)
    {
        lock (_gate)
        {
            if (attempt < _attempt)
                throw new ArgumentOutOfRangeException(nameof(attempt), attempt, $"worker {Owner} is already at attempt {_attempt}");
            if (attempt == _attempt) return;
            _attempt = attempt;
            _cancelled = false;
            DropStale();
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Kills the current attempt, whichever it is: its held tensors are disposed and every wait for it throws.</summary>
    public void Cancel() => Cancel(long.MaxValue);

    /// <summary>
    /// Kills the current attempt if it is not past <paramref name="attempt"/>; returns whether it did. The node's
    /// inboxes of a run move to a new attempt together, when the first of its workers there hears of it, so a late
    /// abort of the old attempt must not cancel the new one in the inbox of a worker that has not caught up yet.
    /// </summary>
    public bool Cancel(long attempt)
    {
        lock (_gate)
        {
            if (attempt < _attempt) return false;
            _cancelled = true;
            DropStale();
            Monitor.PulseAll(_gate);
            return true;
        }
    }

    /// <summary>Disposes every held tensor; blocked and later waits throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            foreach (var tensor in _held.Values) tensor.Dispose();
            _held.Clear();
            Monitor.PulseAll(_gate);
        }
    }

    bool IsStaleLocked(long attempt) => attempt < _attempt || (attempt == _attempt && _cancelled);

    void DropStale()
    {
        foreach (var tag in _held.Keys.Where(t => IsStaleLocked(t.Attempt)).ToList())
        {
            _held.Remove(tag, out var tensor);
            tensor!.Dispose();
            _dropped++;
        }
    }

    string Describe()
    {
        if (_held.Count == 0) return "nothing";
        var shown = string.Join("; ", _held.Keys.Take(8));
        return _held.Count > 8 ? $"{_held.Count} tensors, e.g. {shown}" : shown;
    }
}
