using static TorchSharp.torch;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// The tensor-parallel ranks of one pipeline stage, as the model's Megatron regions see them: a blocking all-reduce.
/// The model calls it from the thread that runs the forward or the backward (on CUDA, the backward's calls come from
/// libtorch's autograd thread for the device while the worker's thread waits in <c>backward()</c>); every rank makes
/// the same calls in the same order, because every rank builds the same graph.
/// The actor runtime adapts its collective group (in-process, Akka remote, NCCL) to this; tests and single-process
/// runs use <see cref="LocalTensorParallelGroup"/>.
/// </summary>
public interface ITensorParallelGroup
{
    /// <summary>This member's rank, 0 .. <see cref="Size"/> - 1 (the shard it holds).</summary>
    int Rank { get; }

    /// <summary>How many ranks split each tensor-parallel layer.</summary>
    int Size { get; }

    /// <summary>
    /// Replaces <paramref name="tensor"/> (contiguous; same shape and dtype on every rank) by the sum of every rank's
    /// tensor, and returns when that is done. The result must be bitwise the same on every rank: the replicated parts
    /// of the model (residual stream, norms, embedding, head) stay identical only if it is.
    /// </summary>
    void AllReduceSumInPlace(Tensor tensor);
}
