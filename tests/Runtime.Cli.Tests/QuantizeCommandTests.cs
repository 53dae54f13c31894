using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Runtime.Model.IO;

namespace Runtime.Cli.Tests;

/// <summary>`rt quantize` end to end, and `rt merge` from its 4-bit output.</summary>
public sealed class QuantizeCommandTests
{
    static readonly string Base = CliFixtures.HfParity("micro-untied");

    static readonly string[] Suffixes =
        ["", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4"];

    [Fact]
    public void Rt_quantize_writes_bitsandbytes_tensors_and_reports_the_measured_bytes_per_parameter()
    {
        using var scratch = new CliFixtures.Scratch();
        var output = scratch.Sub("nf4");
        var (exit, stdout, stderr) = CliFixtures.Run("quantize", "--model", Base, "--out", output);
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);

        using var written = new HfModelFolder(output);
        string[] projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
        long parameters = 0, bytes = 0;
        using var dense = new HfModelFolder(Base);
        foreach (var layer in Enumerable.Range(0, 3))
            foreach (var projection in projections)
            {
                var weight = $"model.layers.{layer}.{projection}.weight";
                parameters += dense.Describe(weight).ElementCount;
                foreach (var suffix in Suffixes)
                {
                    var info = written.Describe(weight + suffix); // throws if bitsandbytes' tensor is missing
                    bytes += info.ElementCount * (info.DType == "U8" ? 1 : 4);
                }
            }
        Assert.Equal("BF16", written.Describe("lm_head.weight").DType);
        Assert.Equal("BF16", written.Describe("model.embed_tokens.weight").DType);

        var reported = Regex.Match(stdout, @"bytes per quantized parameter: (\d+\.\d+) \((\d+) bytes");
        Assert.True(reported.Success, stdout);
        Assert.Equal(bytes, long.Parse(reported.Groups[2].Value, CultureInfo.InvariantCulture));
        Assert.Equal(Math.Round((double)bytes / parameters, 4), double.Parse(reported.Groups[1].Value, CultureInfo.InvariantCulture));

        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        var quantization = config["quantization_config"]!;
        Assert.Equal("bitsandbytes", quantization["quant_method"]!.GetValue<string>());
        Assert.Equal("nf4", quantization["bnb_4bit_quant_type"]!.GetValue<string>());
        Assert.Equal("bfloat16", quantization["bnb_4bit_compute_dtype"]!.GetValue<string>());
        Assert.Equal("bfloat16", config["dtype"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(output, "generation_config.json")));
    }

    [Fact]
    public void Merge_from_the_4bit_folder_writes_a_plain_bf16_model()
    {
        using var scratch = new CliFixtures.Scratch();
        var quantized = scratch.Sub("nf4");
        var merged = scratch.Sub("merged");
        Assert.Equal(0, RtCommand.Run(["quantize", "--model", Base, "--out", quantized]));
        var (exit, stdout, stderr) = CliFixtures.Run("merge", "--model", quantized, "--adapter", CliFixtures.HfParity("micro-untied-lora"), "--out", merged);
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Contains("from a 4-bit base", stdout);

        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "config.json")))!;
        Assert.False(config.ContainsKey("quantization_config"));
        using var folder = new HfModelFolder(merged);
        Assert.All(folder.Names, n => Assert.Equal("BF16", folder.Describe(n).DType));
        Assert.Equal(new long[] { 64, 64 }, folder.Describe("model.layers.0.self_attn.q_proj.weight").Shape);
        Assert.DoesNotContain(folder.Names, n => n.Contains(".absmax"));
    }

    [Fact]
    public void Bad_input_exits_1_with_an_error()
    {
        using var scratch = new CliFixtures.Scratch();
        var (exit, stdout, stderr) = CliFixtures.Run("quantize", "--model", scratch.Sub("absent"), "--out", scratch.Sub("nf4"));
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", stderr);
        Assert.Contains("absent", stderr);
        Assert.Equal("", stdout);

        Assert.Equal(0, CliFixtures.Run("quantize", "--model", Base, "--out", scratch.Sub("nf4")).Exit);
        (exit, _, stderr) = CliFixtures.Run("quantize", "--model", scratch.Sub("nf4"), "--out", scratch.Sub("twice"));
        Assert.Equal(1, exit);
        Assert.Contains("already quantized", stderr);

        Assert.NotEqual(0, CliFixtures.Run("quantize", "--model", Base).Exit); // --out is required
    }
}
