using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>
/// Hands the tensor object itself to a worker in this process: no copy, ownership moves (see <see cref="ITensorTransport"/>
/// for the aliasing rule). A stale tag's tensor is disposed by the receiving inbox.
/// </summary>
public sealed class InProcessTransport(TensorRouter router) : ITensorTransport
{
    public void Send(WorkerId to, TensorTag tag, Tensor tensor)
    {
        TensorHandOver.EnsureSendable(tag, tensor);
        if (router.Resolve(to) is not LocalRoute local)
            throw new InvalidOperationException($"worker {to} is not in this process; {nameof(InProcessTransport)} cannot deliver {tag}");
        local.Inbox.Deliver(tag, tensor);
    }
}
