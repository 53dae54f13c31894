using System.Diagnostics;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using static TorchSharp.torch;

namespace Runtime.Cluster.Workers;

/// <summary>
/// A worker's end of the tensor channels: its inbox, the transport, its collective groups. It counts the tensors that
/// cross the worker's thread boundary (sent away: made here, freed elsewhere; taken: made elsewhere, freed here) so
/// that <see cref="StageWorker.LiveTensors"/> can tell the tensors the worker still holds from those it merely passed
/// on; and it times how long the worker blocked waiting for each kind of tensor.
/// </summary>
public sealed class WorkerChannels(WorkerId self, TensorInbox inbox, ITensorTransport transport, TimeSpan receiveTimeout,
    Func<GroupKind, IReadOnlyList<WorkerId>, ICollectiveGroup> createGroup)
{
    public WorkerId Self { get; } = self;

    public TensorInbox Inbox { get; } = inbox;

    /// <summary>Tensors handed to the transport (their ownership left this thread).</summary>
    public long Sent { get; private set; }

    /// <summary>Tensors taken from the inbox (made on another thread, owned here from then on).</summary>
    public long Taken { get; private set; }

    /// <summary>Seconds blocked in <see cref="Take"/>, by the kind of tensor waited for, since the last <see cref="ResetWaits"/>.</summary>
    public double DataWaitSeconds { get; private set; }

    public double PipelineWaitSeconds { get; private set; }

    public void ResetWaits() => DataWaitSeconds = PipelineWaitSeconds = 0;

    /// <summary>Blocks until <paramref name="tag"/> arrives; the tensor joins the caller's dispose scope.</summary>
    public Tensor Take(TensorTag tag)
    {
        var clock = Stopwatch.StartNew();
        var tensor = Inbox.Take(tag, receiveTimeout);
        Taken++;
        if (tag.Kind == TensorKind.Data) DataWaitSeconds += clock.Elapsed.TotalSeconds;
        else PipelineWaitSeconds += clock.Elapsed.TotalSeconds;
        return tensor;
    }

    /// <summary>Sends <paramref name="tensor"/> (ownership moves: see <see cref="ITensorTransport"/>).</summary>
    public void Send(WorkerId to, TensorTag tag, Tensor tensor)
    {
        transport.Send(to, tag, tensor);
        Sent++;
    }

    /// <summary>A collective group of <paramref name="members"/> (this worker among them) over the same inbox.</summary>
    public ICollectiveGroup Group(GroupKind kind, IReadOnlyList<WorkerId> members) => createGroup(kind, members);
}
