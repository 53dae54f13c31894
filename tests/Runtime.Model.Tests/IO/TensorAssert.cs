using static TorchSharp.torch;

namespace Runtime.Model.Tests.IO;

public static class TensorAssert
{
    /// <summary>Same dtype, same shape, every element equal.</summary>
    public static void Identical(Tensor expected, Tensor actual, string? what = null)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        using var same = expected.eq(actual);
        using var all = same.all();
        Assert.True(all.item<bool>(), $"values differ{(what is null ? "" : $" in {what}")}");
    }
}
