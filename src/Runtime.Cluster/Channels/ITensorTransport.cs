using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>
/// Sends a tensor to a worker's inbox. Called on the sender's worker thread; never blocks for long (remote bytes are
/// cut and written by other threads).
/// <para>
/// Ownership moves with the call: the tensor leaves the caller's dispose scope and the caller must neither use nor
/// dispose it afterwards. In-process the receiver gets this very object, so aliasing matters: send a tensor that no one
/// mutates later (a fresh result, or <c>detach()</c> of an activation whose values stay as they are; a view of a
/// parameter or of a buffer reused next micro-batch must be cloned first). A tensor that requires grad is refused:
/// workers exchange values, never autograd graphs.
/// </para>
/// </summary>
public interface ITensorTransport
{
    void Send(WorkerId to, TensorTag tag, Tensor tensor);
}

internal static class TensorHandOver
{
    public static void EnsureSendable(TensorTag tag, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tag);
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.IsInvalid) throw new ObjectDisposedException($"the tensor for {tag} was already disposed");
        if (tensor.requires_grad)
            throw new ArgumentException($"the tensor for {tag} requires grad; send tensor.detach() (workers exchange values, not autograd graphs)", nameof(tensor));
    }
}
