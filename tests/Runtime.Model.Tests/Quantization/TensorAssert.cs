using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

internal static class TensorAssert
{
    /// <summary>Same dtype, shape and every element bit-for-bit equal.</summary>
    public static void Identical(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        using var same = expected.eq(actual).all();
        Assert.True(same.item<bool>(), "tensors differ");
    }
}
