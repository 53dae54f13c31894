using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

/// <summary>
/// Byte-for-byte comparison with what bitsandbytes itself produced (Fixtures/bitsandbytes-nf4, made by running its
/// Python code; see the README there).
/// </summary>
public class BitsAndBytesReferenceTests
{
    private static readonly JsonObject Reference = LoadReference();

    private static JsonObject LoadReference([CallerFilePath] string here = "")
    {
        var path = Path.Combine(Path.GetDirectoryName(here)!, "..", "Fixtures", "bitsandbytes-nf4", "reference.json");
        return (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;
    }

    private static JsonObject Case(string name) => (JsonObject)Reference["cases"]![name]!;

    private static byte[] Bytes(JsonObject c, string key) => Convert.FromBase64String((string)c[key]!);

    private static float[] Floats(JsonObject c, string key) => MemoryMarshal.Cast<byte, float>(Bytes(c, key)).ToArray();

    private static float[] Bf16AsFloats(byte[] raw)
        => MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(h => BitConverter.Int32BitsToSingle(h << 16)).ToArray();

    private static Tensor Input(JsonObject c)
    {
        var shape = c["shape"]!.AsArray().Select(d => (long)d!).ToArray();
        return (string)c["dtype"]! switch
        {
            "float32" => tensor(Floats(c, "input"), shape),
            "bfloat16" => tensor(Bf16AsFloats(Bytes(c, "input")), shape).to(ScalarType.BFloat16), // exact: bf16 values
            var other => throw new InvalidOperationException($"fixture dtype {other}"),
        };
    }

    private static string StateJson(IReadOnlyList<(string Name, Tensor Tensor)> tensors)
        => Encoding.UTF8.GetString(tensors.Single(t => t.Name.Contains("quant_state")).Tensor.data<byte>().ToArray());

    [Theory]
    [InlineData("odd")]    // [7, 67] float32: a partial last block and an odd element count
    [InlineData("bf16")]   // [300, 64] bfloat16: 300 blocks, so two nested blocks, the second partial
    [InlineData("zeros")]  // [2, 64] all zero
    public void Double_quantized_weight_matches_bitsandbytes_byte_for_byte(string name)
    {
        var c = Case(name);
        using var w = Input(c);
        using var q = Nf4Quantizer.Quantize(w);
        var tensors = Nf4Serialization.ToTensors("weight", q);
        try
        {
            Assert.Equal(c["packed_shape"]!.AsArray().Select(d => (long)d!).ToArray(), q.Packed.shape);
            Assert.Equal(Bytes(c, "packed"), q.Packed.data<byte>().ToArray());
            Assert.Equal(Bytes(c, "absmax"), q.Absmax.data<byte>().ToArray());
            if (name == "zeros")
            {
                // All absmax are 0, so the one nested block holds only zeros. The CUDA kernel stores its absmax, 0;
                // the CPU backend stores max(absmax, 1e-38) for a last block shorter than 256. Either decodes to 0.
                Assert.Equal([1e-38f], Floats(c, "nested_absmax"));
                Assert.Equal([0f], q.Nested!.Absmax.data<float>().ToArray());
            }
            else
            {
                Assert.Equal(Floats(c, "nested_absmax"), q.Nested!.Absmax.data<float>().ToArray());
            }
            Assert.Equal(Floats(c, "nested_quant_map"), q.Nested!.Code.data<float>().ToArray());
            Assert.Equal(Floats(c, "quant_map"), tensors.Single(t => t.Name == "weight.quant_map").Tensor.data<float>().ToArray());
            Assert.Equal((string)c["quant_state_json"]!, StateJson(tensors));
            Assert.Equal(
                c["tensor_keys"]!.AsArray().Select(k => "weight." + (string)k!).Prepend("weight").ToArray(),
                tensors.Select(t => t.Name).ToArray());

            using var d = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16);
            using var dAsFloat = d.to(ScalarType.Float32);
            Assert.Equal(Bf16AsFloats(Bytes(c, "dequantized_bf16")), dAsFloat.data<float>().ToArray());
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    [Theory]
    [InlineData("odd")]
    [InlineData("bf16")]
    public void Plain_absmax_matches_bitsandbytes(string name)
    {
        var c = Case(name);
        using var w = Input(c);
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize: false);
        var tensors = Nf4Serialization.ToTensors("weight", q);
        Assert.Equal(Floats(c, "plain_absmax"), q.Absmax.data<float>().ToArray());
        Assert.Equal(Bytes(c, "packed"), q.Packed.data<byte>().ToArray());
        Assert.Equal((string)c["plain_quant_state_json"]!, StateJson(tensors));
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void Values_on_midpoints_follow_the_cuda_kernel_which_differs_from_the_cpu_backend_at_four_floats()
    {
        // The probe block has absmax 1, so each scaled value is the input itself.
        var c = Case("probe");
        var x = Floats(c, "input");
        using var w = Input(c);
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize: false);
        var ours = Unpack(q.Packed.data<byte>().ToArray());
        var cpuBackend = Unpack(Bytes(c, "packed"));

        var differing = new List<float>();
        for (var i = 0; i < x.Length; i++)
        {
            // The CUDA kernel's rule, with its thresholds as nvcc compiles them.
            Assert.Equal(CodeTableTests.CudaNf4Thresholds.Count(t => x[i] > t), ours[i]);
            if (ours[i] != cpuBackend[i])
            {
                Assert.Equal(1, Math.Abs(ours[i] - cpuBackend[i]));
                differing.Add(x[i]);
            }
        }
        // Where the fp32 midpoint and the CUDA literal are different floats (thresholds 0, 8, 12, 14), one of the two
        // floats is coded differently: the fp32 midpoint for 0, 12 and 14, the literal for 8.
        float[] expected = [-0.8480963706970215f, 0.1202552542090416f, 0.5016634464263916f, 0.8614784479141235f];
        Assert.Equal(expected, differing.ToArray());
    }

    private static int[] Unpack(byte[] packed) => packed.SelectMany(b => new[] { b >> 4, b & 0xF }).ToArray();

    [Fact]
    public void Dynamic_map_is_bitsandbytes_create_dynamic_map()
    {
        Assert.Equal(MemoryMarshal.Cast<byte, float>(Convert.FromBase64String((string)Reference["dynamic_map"]!)).ToArray(),
            DynamicMap.CreateSigned());
    }

    [Fact]
    public void Config_json_has_the_keys_and_values_of_transformers_to_dict()
    {
        var theirs = JsonNode.Parse((string)Reference["transformers_bnb_config_to_dict_sorted"]!)!.ToJsonString();
        Assert.Equal(theirs, BitsAndBytesConfig.QLoRA.ToJson().ToJsonString());
    }

    [Fact]
    public void Tensor_names_dtypes_and_shapes_match_a_linear4bit_state_dict()
    {
        // bnb.nn.Linear4bit(128, 64): weight [64, 128] float32.
        using var w = randn(64, 128);
        using var q = Nf4Quantizer.Quantize(w);
        var tensors = Nf4Serialization.ToTensors("weight", q);
        var theirs = (JsonObject)Reference["linear4bit_state_dict"]!;
        Assert.Equal(theirs.Select(kv => kv.Key).ToArray(), tensors.Select(t => t.Name).ToArray());
        foreach (var (name, t) in tensors)
        {
            var expected = theirs[name]!.AsArray();
            Assert.Equal(TorchName(t.dtype), (string)expected[0]!);
            if (!name.Contains("quant_state")) // the JSON's length depends on the offset's digits
                Assert.Equal(expected[1]!.AsArray().Select(d => (long)d!).ToArray(), t.shape);
            t.Dispose();
        }
    }

    private static string TorchName(ScalarType dtype) => dtype switch
    {
        ScalarType.Byte => "torch.uint8",
        ScalarType.Float32 => "torch.float32",
        _ => dtype.ToString(),
    };

    [Fact]
    public void Cuda_thresholds_are_the_floats_nvcc_compiles_the_kernel_literals_to()
    {
        // nvcc_literals lines: "<i> device <value> <hex bits> host ...", for thresholds 0, 1, 8, 12, 14, 7, 3, 10.
        int[] thresholdIndex = [0, 1, 8, 12, 14, 7, 3, 10];
        var lines = ((string)Reference["nvcc_literals"]!).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(thresholdIndex.Length, lines.Length);
        for (var i = 0; i < lines.Length; i++)
        {
            var deviceBits = Convert.ToUInt32(lines[i].Split(' ')[3], 16);
            Assert.Equal(deviceBits, BitConverter.SingleToUInt32Bits(Nf4Codebook.Thresholds[thresholdIndex[i]]));
        }
    }
}
