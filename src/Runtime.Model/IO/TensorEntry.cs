using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// A tensor to be written, declared before its data exists: the writers lay out headers and shards from the declared
/// dtype and shape, then call <see cref="Produce"/> once, when the tensor's turn comes, write its bytes and dispose the
/// tensor it returned. So saving a large model holds one tensor at a time. <see cref="Produce"/> must return a tensor
/// the writer may dispose (return <c>t.alias()</c> for a tensor you keep); it may return another dtype (the writer
/// converts it to <see cref="DType"/>) or another device, but not another shape.
/// </summary>
public sealed record TensorEntry(string Name, ScalarType DType, long[] Shape, Func<Tensor> Produce)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Bytes the tensor takes in a safetensors file.</summary>
    public long ByteCount => ElementCount * SafeTensorsDType.SizeOf(DType);

    /// <summary>An entry for a tensor that already exists and stays the caller's (the writer disposes only an alias).</summary>
    public static TensorEntry Of(string name, Tensor tensor) =>
        new(name, tensor.dtype, tensor.shape, tensor.alias);
}
