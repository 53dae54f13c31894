using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Training.Checkpoints;

/// <summary>Where a worker's part of a tensor sits in the full tensor: the full shape and the slice (null: all of it).</summary>
public readonly record struct TensorPlacement(long[] FullShape, TensorSlice? Slice = null)
{
    public static TensorPlacement Whole(long[] shape) => new(shape);

    /// <summary>The shape of the part: the full shape with the slice's length along its dimension.</summary>
    public long[] PartShape
    {
        get
        {
            var shape = (long[])FullShape.Clone();
            if (Slice is { } s) shape[s.Dim] = s.Length;
            return shape;
        }
    }
}

/// <summary>
/// A tensor, or a worker's slice of one, to save under its canonical full-model name. <see cref="Value"/> holds the
/// worker's part (any device: it is copied to host memory as it is written); <see cref="Placement"/> says where the
/// part sits in the full tensor. The writer does not dispose <see cref="Value"/>.
/// </summary>
public sealed record ShardTensor(string Name, Tensor Value, TensorPlacement Placement)
{
    /// <summary>A tensor saved whole.</summary>
    public static ShardTensor Whole(string name, Tensor value) => new(name, value, TensorPlacement.Whole(value.shape));
}
