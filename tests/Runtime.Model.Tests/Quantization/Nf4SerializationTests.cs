using System.Text;
using Runtime.Model.IO;
using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class Nf4SerializationTests
{
    private const string W = "model.layers.0.self_attn.q_proj.weight";

    /// <summary>[1, 256] bf16 with block absmax 1, 2, 3, 6: the nested offset (their mean) is exactly 3.</summary>
    private static Nf4Tensor QuantizedWithOffsetThree(bool doubleQuantize = true)
    {
        var w = new float[256];
        w[0] = 1f;
        w[64] = -2f;
        w[128] = 3f;
        w[200] = -6f;
        w[201] = 0.5f;
        using var t = tensor(w, [1, 256]).to(ScalarType.BFloat16);
        return Nf4Quantizer.Quantize(t, doubleQuantize);
    }

    private static Dictionary<string, Tensor> ToDictionary(IReadOnlyList<(string Name, Tensor Tensor)> tensors)
        => tensors.ToDictionary(t => t.Name, t => t.Tensor);

    private static void AssertTensor(Tensor t, ScalarType dtype, params long[] shape)
    {
        Assert.Equal(dtype, t.dtype);
        Assert.Equal(shape, t.shape);
    }

    private static string JsonOf(Tensor t) => Encoding.UTF8.GetString(t.data<byte>().ToArray());

    [Fact]
    public void Writes_the_six_bitsandbytes_tensors_in_order_with_their_dtypes_and_shapes()
    {
        using var q = QuantizedWithOffsetThree();
        var tensors = Nf4Serialization.ToTensors(W, q);
        try
        {
            Assert.Equal(
                [W, W + ".absmax", W + ".quant_map", W + ".nested_absmax", W + ".nested_quant_map", W + ".quant_state.bitsandbytes__nf4"],
                tensors.Select(t => t.Name).ToArray());
            var d = ToDictionary(tensors);
            AssertTensor(d[W], ScalarType.Byte, 128, 1);
            AssertTensor(d[W + ".absmax"], ScalarType.Byte, 4);
            AssertTensor(d[W + ".quant_map"], ScalarType.Float32, 16);
            AssertTensor(d[W + ".nested_absmax"], ScalarType.Float32, 1);
            AssertTensor(d[W + ".nested_quant_map"], ScalarType.Float32, 256);
            Assert.Equal(-0.6961928009986877f, d[W + ".quant_map"].data<float>()[1]);
            Assert.Equal(ScalarType.Byte, d[W + ".quant_state.bitsandbytes__nf4"].dtype);
            Assert.Equal(Nf4Serialization.TensorNames(W), tensors.Select(t => t.Name).ToArray());
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    [Fact]
    public void Quant_state_json_is_what_python_json_dumps_writes()
    {
        using var q = QuantizedWithOffsetThree();
        var tensors = Nf4Serialization.ToTensors(W, q);
        using var state = tensors[^1].Tensor;
        Assert.Equal(
            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [1, 256], " +
            "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 3.0}",
            JsonOf(state));
        foreach (var (_, t) in tensors.SkipLast(1)) t.Dispose();
    }

    [Fact]
    public void Without_double_quantization_absmax_is_float32_and_the_json_has_no_nested_keys()
    {
        using var q = QuantizedWithOffsetThree(doubleQuantize: false);
        var tensors = Nf4Serialization.ToTensors(W, q);
        var d = ToDictionary(tensors);
        try
        {
            Assert.Equal([W, W + ".absmax", W + ".quant_map", W + ".quant_state.bitsandbytes__nf4"], tensors.Select(t => t.Name).ToArray());
            Assert.Equal(new[] { 1f, 2f, 3f, 6f }, d[W + ".absmax"].data<float>().ToArray());
            Assert.Equal(
                "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [1, 256]}",
                JsonOf(d[W + ".quant_state.bitsandbytes__nf4"]));
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Round_trips_through_the_named_tensors(bool doubleQuantize)
    {
        using var g = new Generator(11);
        using var w = randn(24, 100, generator: g).to(ScalarType.BFloat16);  // 2400 elements, partial last block
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize);
        var d = ToDictionary(Nf4Serialization.ToTensors(W, q));
        using var back = Nf4Serialization.FromTensors(W, name => d.Remove(name, out var t) ? t : null);
        foreach (var t in d.Values) t.Dispose();

        Assert.Equal(q.Shape, back.Shape);
        Assert.Equal(ScalarType.BFloat16, back.DType);
        Assert.Equal(doubleQuantize, back.IsDoubleQuantized);
        TensorAssert.Identical(q.Packed, back.Packed);
        TensorAssert.Identical(q.Absmax, back.Absmax);
        if (doubleQuantize) Assert.Equal(q.Nested!.Offset, back.Nested!.Offset);
        using var a = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16);
        using var b = Nf4Quantizer.Dequantize(back, ScalarType.BFloat16);
        TensorAssert.Identical(a, b);
    }

    [Fact]
    public void Offset_is_written_with_python_float_repr_and_read_back_exactly()
    {
        using var g = new Generator(12);
        using var w = randn(8, 64, generator: g);
        using var q = Nf4Quantizer.Quantize(w);
        var tensors = Nf4Serialization.ToTensors(W, q);
        var json = JsonOf(tensors[^1].Tensor);
        Assert.Contains("\"nested_offset\": " + PythonFloat.Repr(q.Nested!.Offset) + "}", json);
        var d = ToDictionary(tensors);
        using var back = Nf4Serialization.FromTensors(W, name => d.Remove(name, out var t) ? t : null);
        Assert.Equal(q.Nested.Offset, back.Nested!.Offset);
        foreach (var t in d.Values) t.Dispose();
    }

    [Theory]
    [InlineData("")]
    [InlineData(".absmax")]
    [InlineData(".quant_map")]
    [InlineData(".nested_absmax")]
    [InlineData(".nested_quant_map")]
    [InlineData(".quant_state.bitsandbytes__nf4")]
    public void Missing_piece_is_named(string suffix)
    {
        using var q = QuantizedWithOffsetThree();
        var d = ToDictionary(Nf4Serialization.ToTensors(W, q));
        d.Remove(W + suffix, out var removed);
        removed!.Dispose();
        var e = Assert.Throws<TensorFileException>(() => Nf4Serialization.FromTensors(W, name => d.Remove(name, out var t) ? t : null));
        Assert.Contains($"'{W + suffix}' is missing", e.Message);
        foreach (var t in d.Values) t.Dispose();
    }

    public static TheoryData<string, string, string> BadQuantStates => new()
    {
        { "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [1, 256]}", "quant_type", "fp4" },
        { "{\"quant_type\": \"nf4\", \"blocksize\": 128, \"dtype\": \"bfloat16\", \"shape\": [1, 256]}", "blocksize", "128" },
        { "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"int8\", \"shape\": [1, 256]}", "dtype", "int8" },
        { "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\"}", "shape", "missing" },
        { "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [1, 256], \"nested_blocksize\": 128, \"nested_dtype\": \"float32\", \"nested_offset\": 3.0}", "nested_blocksize", "128" },
        { "not json", "valid JSON", "" },
    };

    [Theory]
    [MemberData(nameof(BadQuantStates))]
    public void Inconsistent_quant_state_is_rejected_naming_the_key(string json, string key, string detail)
    {
        using var q = QuantizedWithOffsetThree();
        var d = ToDictionary(Nf4Serialization.ToTensors(W, q));
        var stateName = W + ".quant_state.bitsandbytes__nf4";
        d[stateName].Dispose();
        d[stateName] = tensor(Encoding.UTF8.GetBytes(json));
        var e = Assert.Throws<TensorFileException>(() => Nf4Serialization.FromTensors(W, name => d.Remove(name, out var t) ? t : null));
        Assert.Contains(stateName, e.Message);
        Assert.Contains(key, e.Message);
        Assert.Contains(detail, e.Message);
        foreach (var t in d.Values) t.Dispose();
    }

    [Fact]
    public void Wrong_sizes_and_tables_are_rejected_naming_the_tensor()
    {
        void Expect(string name, Func<Tensor> replacement, string detail)
        {
            using var q = QuantizedWithOffsetThree();
            var d = ToDictionary(Nf4Serialization.ToTensors(W, q));
            d[name].Dispose();
            d[name] = replacement();
            var e = Assert.Throws<TensorFileException>(() => Nf4Serialization.FromTensors(W, n => d.Remove(n, out var t) ? t : null));
            Assert.Contains($"'{name}'", e.Message);
            Assert.Contains(detail, e.Message);
            foreach (var t in d.Values) t.Dispose();
        }
        Expect(W, () => zeros(127, 1, dtype: ScalarType.Byte), "128 elements");
        Expect(W, () => zeros(64, 1, dtype: ScalarType.BFloat16), "uint8");
        Expect(W + ".absmax", () => zeros(5, dtype: ScalarType.Byte), "4 elements");
        Expect(W + ".absmax", () => zeros(4, dtype: ScalarType.Float32), "Byte");
        Expect(W + ".nested_absmax", () => zeros(2), "1 elements");
        Expect(W + ".nested_quant_map", () => zeros(255), "256 elements");
        Expect(W + ".quant_map", () => linspace(-1, 1, 16), "not the NF4 code table");
    }

    [Fact]
    public void Fp4_weights_are_reported_as_fp4()
    {
        using var q = QuantizedWithOffsetThree();
        var d = ToDictionary(Nf4Serialization.ToTensors(W, q));
        d.Remove(W + ".quant_state.bitsandbytes__nf4", out var state);
        d[W + ".quant_state.bitsandbytes__fp4"] = state!;
        var e = Assert.Throws<TensorFileException>(() => Nf4Serialization.FromTensors(W, n => d.Remove(n, out var t) ? t : null));
        Assert.Contains("fp4", e.Message);
        foreach (var t in d.Values) t.Dispose();
    }

    [Fact]
    public void Reads_from_a_tensor_source_and_names_its_location_in_errors()
    {
        using var q = QuantizedWithOffsetThree();
        using var source = new InMemoryTensorSource("/models/m/model.safetensors", Nf4Serialization.ToTensors(W, q));
        Assert.True(Nf4Serialization.IsQuantized(source, W));
        using var back = Nf4Serialization.FromTensors(W, source);
        TensorAssert.Identical(q.Packed, back.Packed);

        source.Remove(W + ".nested_absmax");
        var e = Assert.Throws<TensorFileException>(() => Nf4Serialization.FromTensors(W, source));
        Assert.StartsWith("/models/m/model.safetensors: ", e.Message);
        Assert.Contains($"'{W}.nested_absmax'", e.Message);
    }

    [Fact]
    public void Float64_weights_cannot_be_written_in_bitsandbytes_form()
    {
        using var t = ones(2, 64, dtype: ScalarType.Float64);
        using var q = Nf4Quantizer.Quantize(t);
        var e = Assert.Throws<ArgumentException>(() => Nf4Serialization.ToTensors(W, q));
        Assert.Contains("Float64", e.Message);
    }

    [Fact]
    public void Bytes_per_parameter_of_a_4096_square_weight_is_about_0_516()
    {
        const long n = 4096L * 4096;
        using var g = new Generator(13);
        using var w = randn(4096, 4096, generator: g, dtype: ScalarType.BFloat16);
        using var q = Nf4Quantizer.Quantize(w);
        var tensors = Nf4Serialization.ToTensors(W, q);
        var bytes = tensors.ToDictionary(t => t.Name, t => t.Tensor.numel() * t.Tensor.ElementSize);
        foreach (var (_, t) in tensors) t.Dispose();

        // By hand: codes n/2 = 8388608, absmax codes n/64 = 262144, nested absmax 262144/256 * 4 = 4096,
        // quant_map 64, nested_quant_map 1024.
        var tensorBytes = bytes.Where(b => !b.Key.Contains("quant_state")).Sum(b => b.Value);
        Assert.Equal(8388608 + 262144 + 4096 + 64 + 1024, tensorBytes);
        Assert.Equal(tensorBytes, Nf4Layout.SerializedTensorBytes(n));

        var total = bytes.Values.Sum();
        var measured = (double)total / n;
        Assert.InRange(measured, 0.5159, 0.5160);   // 8655936 bytes + ~170 bytes of JSON over 16.8M parameters
        Assert.Equal(measured, Nf4Layout.BytesPerParameter(n), 2e-5);  // they differ by the JSON's ~1e-5
    }

    [Theory]
    [InlineData(67L, true, 34 + 2 + 4 + 64 + 1024)]         // odd, 2 blocks, 1 nested block
    [InlineData(67L, false, 34 + 2 * 4 + 64)]
    [InlineData(64L * 257, true, 64 * 257 / 2 + 257 + 2 * 4 + 64 + 1024)]
    public void Serialized_tensor_bytes_by_hand(long n, bool doubleQuantized, long expected)
    {
        Assert.Equal(expected, Nf4Layout.SerializedTensorBytes(n, doubleQuantized));
    }
}
