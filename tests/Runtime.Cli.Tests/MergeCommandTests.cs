using System.Text.Json.Nodes;
using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests;

/// <summary>`rt merge` end to end on the real PEFT adapter fixture.</summary>
public sealed class MergeCommandTests
{
    static readonly string Base = CliFixtures.HfParity("micro-untied");
    static readonly string Adapter = CliFixtures.HfParity("micro-untied-lora");
    const string Q0 = "model.layers.0.self_attn.q_proj.weight";

    [Fact]
    public void Rt_merge_writes_a_full_folder_with_PEFTs_merged_weights()
    {
        using var scratch = new CliFixtures.Scratch();
        var output = scratch.Sub("merged");
        Assert.Equal(0, RtCommand.Run(["merge", "--model", Base, "--adapter", Adapter, "--out", output]));

        Assert.True(File.Exists(Path.Combine(output, "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(Base, "generation_config.json")), File.ReadAllBytes(Path.Combine(output, "generation_config.json")));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("float32", config["dtype"]!.GetValue<string>());
        Assert.Equal(64, config["hidden_size"]!.GetValue<int>());

        using var merged = new HfModelFolder(output);
        using var reference = new SafeTensorsFile(CliFixtures.HfParity("micro-untied-lora.merged-q0.safetensors"));
        using var actual = merged.Load(Q0);
        using var expected = reference.Load(Q0);
        using var diff = (actual - expected).abs().max();
        Assert.True(diff.item<float>() < 1e-6f, $"merged q_proj differs from PEFT's by {diff.item<float>()}");
        using var original = new HfModelFolder(Base);
        Assert.Equal(original.Names, merged.Names);
    }

    [Fact]
    public void Dtype_bf16_writes_bf16_tensors_and_config()
    {
        using var scratch = new CliFixtures.Scratch();
        var output = scratch.Sub("merged");
        var (exit, stdout, stderr) = CliFixtures.Run("merge", "--model", Base, "--adapter", Adapter, "--out", output, "--dtype", "bf16");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Contains("merged 21 adapted weights", stdout);
        Assert.Contains("bf16", stdout);
        using var merged = new HfModelFolder(output);
        Assert.All(merged.Names, n => Assert.Equal("BF16", merged.Describe(n).DType));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("bfloat16", config["dtype"]!.GetValue<string>());
    }

    [Fact]
    public void Bad_input_exits_1_with_an_error_naming_the_problem()
    {
        using var scratch = new CliFixtures.Scratch();
        var output = scratch.Sub("merged");

        var (exit, stdout, stderr) = CliFixtures.Run("merge", "--model", Base, "--adapter", scratch.Sub("no-adapter"), "--out", output);
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", stderr);
        Assert.Contains("no-adapter", stderr);
        Assert.Equal("", stdout);
        Assert.False(Directory.Exists(output));

        (exit, _, stderr) = CliFixtures.Run("merge", "--model", scratch.Sub("no-model"), "--adapter", Adapter, "--out", output);
        Assert.Equal(1, exit);
        Assert.Contains("no-model", stderr);

        (exit, _, stderr) = CliFixtures.Run("merge", "--model", Base, "--adapter", Adapter, "--out", Base);
        Assert.Equal(1, exit);
        Assert.Contains("also an input", stderr);

        // Only bf16 and fp32 are offered.
        (exit, _, _) = CliFixtures.Run("merge", "--model", Base, "--adapter", Adapter, "--out", output, "--dtype", "fp16");
        Assert.NotEqual(0, exit);
    }
}
