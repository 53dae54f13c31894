using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

/// <summary>Small tensor helpers shared by the optimizer tests.</summary>
internal static class OptimTestTensors
{
    public static Tensor Randn(Generator generator, params long[] shape) =>
        torch.randn(shape, ScalarType.Float32, generator: generator);

    public static float[] Floats(Tensor t) => t.detach().cpu().contiguous().to(ScalarType.Float32).data<float>().ToArray();

    public static double[] Doubles(Tensor t) => t.detach().cpu().contiguous().to(ScalarType.Float64).data<double>().ToArray();

    /// <summary>Asserts equal bits (same dtype, shape and every element), naming the first element that differs.</summary>
    public static void AssertBitwiseEqual(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        var e = Doubles(expected);
        var a = Doubles(actual);
        for (int i = 0; i < e.Length; i++)
            if (BitConverter.DoubleToInt64Bits(e[i]) != BitConverter.DoubleToInt64Bits(a[i]))
                Assert.Fail($"{what}: element {i} is {a[i]:R}, expected {e[i]:R} (bitwise)");
    }

    /// <summary>Asserts |actual - expected| &lt;= relative * |expected| + absolute for every element.</summary>
    public static void AssertClose(double[] expected, double[] actual, double relative, double absolute, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double tolerance = relative * Math.Abs(expected[i]) + absolute;
            if (!(Math.Abs(actual[i] - expected[i]) <= tolerance))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (tolerance {tolerance:E2})");
        }
    }

    public static void AssertClose(Tensor expected, Tensor actual, double relative, double absolute, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        AssertClose(Doubles(expected), Doubles(actual), relative, absolute, what);
    }
}

/// <summary>An exported state dictionary that disposes its tensors.</summary>
internal sealed class DisposableState(Dictionary<string, Tensor> tensors) : IDisposable
{
    public Dictionary<string, Tensor> Tensors { get; } = tensors;
    public Tensor this[string name] => Tensors[name];
    public void Dispose()
    {
        foreach (var tensor in Tensors.Values) tensor.Dispose();
    }
}
