using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>Where a named tensor lives and what it is, without reading its data.</summary>
public sealed record TensorInfo(string Name, string DType, long[] Shape, string File)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A contiguous range along one dimension of a tensor: how a tensor-parallel shard or a checkpoint shard covers part of
/// a full tensor (Megatron column-parallel weights split dim 0, row-parallel weights dim 1).
/// </summary>
public readonly record struct TensorSlice(int Dim, long Start, long Length);

/// <summary>
/// Named tensors that can be read one at a time (a Hugging Face model folder, a safetensors file, a checkpoint).
/// Loading never materialises more than the requested tensor (or slice of it), so a worker reads only what it owns.
/// </summary>
public interface ITensorSource : IDisposable
{
    /// <summary>The file or folder, for error messages.</summary>
    string Location { get; }

    IReadOnlyCollection<string> Names { get; }

    bool Contains(string name);

    /// <summary>Throws <see cref="TensorFileException"/> naming the tensor and the location when it is absent.</summary>
    TensorInfo Describe(string name);

    /// <summary>
    /// Reads a tensor (or one slice of it) into a new CPU tensor the caller owns, converted to <paramref name="dtype"/>
    /// when given. Throws <see cref="TensorFileException"/> naming the tensor and the file when it is missing or its
    /// bytes are not all there.
    /// </summary>
    Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null);
}

/// <summary>A tensor file that is missing, truncated, malformed, or lacks a tensor of the expected shape.</summary>
public sealed class TensorFileException(string message) : Exception(message);

public static class TensorSourceExtensions
{
    /// <summary>Loads a tensor after checking its full shape, naming the tensor and file on a mismatch.</summary>
    public static Tensor LoadExpecting(this ITensorSource source, string name, long[] expectedShape,
        ScalarType? dtype = null, TensorSlice? slice = null)
    {
        var info = source.Describe(name);
        if (!info.Shape.SequenceEqual(expectedShape))
            throw new TensorFileException(
                $"{info.File}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expectedShape)}]");
        return source.Load(name, dtype, slice);
    }
}
