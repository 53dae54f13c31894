using Runtime.Model.Quantization;

namespace Runtime.Model.Tests.Quantization;

public class PythonFloatTests
{
    [Theory]
    // Each expectation is what CPython 3 prints for repr(x).
    [InlineData(3.0, "3.0")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(0.0, "0.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(0.000015, "1.5e-05")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(123456789012345678.0, "1.2345678901234568e+17")]
    [InlineData(1.5e-300, "1.5e-300")]
    [InlineData(12345.678, "12345.678")]
    public void Formats_like_python_repr(double value, string expected)
    {
        Assert.Equal(expected, PythonFloat.Repr(value));
    }

    [Fact]
    public void Float32_values_widened_to_double_keep_all_their_digits()
    {
        // repr(float(torch.tensor(0.1, dtype=torch.float32))) == '0.10000000149011612'
        Assert.Equal("0.10000000149011612", PythonFloat.Repr(0.1f));
        Assert.Equal("-0.0", PythonFloat.Repr(-0.0));
    }
}
