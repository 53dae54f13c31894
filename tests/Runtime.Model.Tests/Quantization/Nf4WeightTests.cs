using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class Nf4WeightTests
{
    private static Tensor RandomWeight(long rows, long cols, int seed)
    {
        using var g = new Generator((ulong)seed);
        return randn(rows, cols, generator: g);
    }

    [Fact]
    public void Holds_codes_and_statistics_as_frozen_buffers()
    {
        using var w = RandomWeight(32, 128, 1);
        using var module = Nf4Weight.FromDense(w);
        var buffers = module.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        Assert.Equal(["absmax", "nested_absmax", "nested_quant_map", "packed"], buffers.Keys.Order().ToArray());
        Assert.Equal(ScalarType.Byte, buffers["packed"].dtype);
        Assert.Equal(new long[] { 32 * 128 / 2, 1 }, buffers["packed"].shape);
        Assert.Equal(ScalarType.Byte, buffers["absmax"].dtype);
        Assert.Empty(module.parameters());
        Assert.All(buffers.Values, b => Assert.False(b.requires_grad));
        Assert.Equal(new long[] { 32, 128 }, module.Shape);
        Assert.Equal(ScalarType.Float32, module.OriginalDType);
    }

    [Fact]
    public void Dequantize_matches_the_quantizer()
    {
        using var w = RandomWeight(48, 100, 2);
        using var q = Nf4Quantizer.Quantize(w);
        using var expected = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16);
        using var module = Nf4Weight.FromDense(w);
        using var actual = module.Dequantize(ScalarType.BFloat16);
        TensorAssert.Identical(expected, actual);
        Assert.Equal(new long[] { 48, 100 }, actual.shape);
    }

    [Fact]
    public void Module_to_dtype_keeps_the_statistics_in_float32()
    {
        using var w = RandomWeight(16, 256, 3);
        using var module = Nf4Weight.FromDense(w);
        using var before = module.Dequantize(ScalarType.Float32);
        module.to(ScalarType.BFloat16);
        var buffers = module.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        Assert.Equal(ScalarType.Float32, buffers["nested_absmax"].dtype);
        Assert.Equal(ScalarType.Float32, buffers["nested_quant_map"].dtype);
        using var after = module.Dequantize(ScalarType.Float32);
        TensorAssert.Identical(before, after);
    }

    [Fact]
    public void Gradient_flows_to_the_input_not_the_weight()
    {
        using var w = RandomWeight(8, 64, 4);
        using var module = Nf4Weight.FromDense(w);
        using var x = randn(3, 64).requires_grad_(true);
        using var weight = module.Dequantize(ScalarType.Float32);
        using var y = nn.functional.linear(x, weight);
        using var loss = y.sum();
        loss.backward();
        Assert.NotNull(x.grad);
        // d(sum(x W^T))/dx = column sums of W, the same for every row of x.
        using var expected = weight.sum([0L]).expand(3, 64);
        using var error = (x.grad! - expected).abs().max();
        Assert.True(error.item<float>() < 1e-5f, $"input gradient off by {error.item<float>()}");
        Assert.False(weight.requires_grad);
    }

    [Fact]
    public void ToNf4Tensor_shares_storage_and_survives_its_own_disposal()
    {
        using var w = RandomWeight(4, 64, 5);
        using var module = Nf4Weight.FromDense(w);
        using (var view = module.ToNf4Tensor())
        {
            Assert.Equal(module.Shape, view.Shape);
            Assert.True(view.IsDoubleQuantized);
        }
        using var d = module.Dequantize(ScalarType.Float32); // still valid after the view was disposed
        Assert.Equal(new long[] { 4, 64 }, d.shape);
    }

    [Fact]
    public void Resident_bytes_are_about_half_a_byte_per_parameter()
    {
        using var w = RandomWeight(256, 1024, 6);   // 262144 elements, 4096 blocks, 16 nested blocks
        using var module = Nf4Weight.FromDense(w);
        // packed 131072 + absmax codes 4096 + nested absmax 16 * 4 + nested map 256 * 4
        Assert.Equal(131072 + 4096 + 64 + 1024, module.ResidentBytes);
    }
}
