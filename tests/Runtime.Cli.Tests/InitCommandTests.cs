using System.Security.Cryptography;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Tests.Tokenization;
using TorchSharp;

namespace Runtime.Cli.Tests;

public sealed class InitCommandTests
{
    static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public void Init_writes_a_hugging_face_folder_that_reads_back_as_the_preset()
    {
        using var dir = new ScratchFolder();
        var (exit, stdout, stderr) = Rt.Invoke("init", "--preset", "tiny", "--out", dir["m"], "--seed", "7");
        Assert.True(exit == 0, stderr);
        Assert.Contains("8,405,568 parameters", stdout);

        Assert.Equal(LlamaPresets.Tiny with { TorchDtype = "float32" }, LlamaConfig.Load(dir["m"]) with { EosTokenIds = LlamaPresets.Tiny.EosTokenIds });
        using var folder = new HfModelFolder(dir["m"]);
        var expected = Runtime.Model.Llama.LlamaTensorNames.All(LlamaPresets.Tiny).ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal(expected.Keys.Order(), folder.Names.Order());
        foreach (var (name, shape) in expected)
        {
            var info = folder.Describe(name);
            Assert.Equal(shape, info.Shape);
            Assert.Equal("F32", info.DType);
        }
        using var norm = folder.Load("model.layers.0.input_layernorm.weight");
        Assert.True(norm.eq(1).all().item<bool>(), "norm weights start at one, as transformers initialises them");
        Assert.True(File.Exists(Path.Combine(dir["m"], "generation_config.json")));
    }

    [Fact]
    public void Same_seed_gives_the_same_bytes_and_another_seed_does_not()
    {
        using var dir = new ScratchFolder();
        foreach (var (name, seed) in new[] { ("a", "3"), ("b", "3"), ("c", "4") })
            Assert.Equal(0, Rt.Invoke("init", "--preset", "tiny", "--out", dir[name], "--seed", seed).Exit);
        Assert.Equal(Hash(Path.Combine(dir["a"], "model.safetensors")), Hash(Path.Combine(dir["b"], "model.safetensors")));
        Assert.NotEqual(Hash(Path.Combine(dir["a"], "model.safetensors")), Hash(Path.Combine(dir["c"], "model.safetensors")));
    }

    [Fact]
    public void Init_std_sets_the_spread_of_embeddings_and_projections_but_not_of_norms()
    {
        using var dir = new ScratchFolder();
        Assert.Equal(0, Rt.Invoke("init", "--preset", "tiny", "--out", dir["m"], "--init-std", "0.3").Exit);
        using var folder = new HfModelFolder(dir["m"]);
        using var embedding = folder.Load("model.embed_tokens.weight");
        using var gate = folder.Load("model.layers.2.mlp.gate_proj.weight");
        using var norm = folder.Load("model.norm.weight");
        Assert.InRange(embedding.std().item<float>(), 0.299f, 0.301f); // 8.2M draws
        Assert.InRange(gate.std().item<float>(), 0.29f, 0.31f);
        Assert.True(norm.eq(1).all().item<bool>());

        var bad = Rt.Invoke("init", "--preset", "tiny", "--out", dir["bad"], "--init-std", "0");
        Assert.Equal(1, bad.Exit);
        Assert.Contains("--init-std must be a positive number", bad.Err);
        Assert.False(Directory.Exists(dir["bad"]));
    }

    [Fact]
    public void Bf16_init_stores_bf16_tensors_and_says_so_in_config()
    {
        using var dir = new ScratchFolder();
        Assert.Equal(0, Rt.Invoke("init", "--preset", "tiny", "--out", dir["m"], "--dtype", "bf16").Exit);
        Assert.Equal("bfloat16", LlamaConfig.Load(dir["m"]).TorchDtype);
        using var folder = new HfModelFolder(dir["m"]);
        Assert.Equal("BF16", folder.Describe("model.embed_tokens.weight").DType);
    }

    [Fact]
    public void Tokenizer_files_are_copied_next_to_the_weights()
    {
        using var dir = new ScratchFolder();
        var (exit, _, stderr) = Rt.Invoke("init", "--preset", "tiny", "--out", dir["m"], "--tokenizer", TokenizerDownload.TokenizerJson);
        Assert.True(exit == 0, stderr);
        Assert.Equal(Hash(TokenizerDownload.TokenizerJson), Hash(Path.Combine(dir["m"], "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(dir["m"], "tokenizer_config.json")));
    }

    [Fact]
    public void Refuses_a_non_empty_folder_an_unknown_preset_and_a_bad_tokenizer_writing_nothing()
    {
        using var dir = new ScratchFolder();
        File.WriteAllText(dir["keep.txt"], "mine");
        var (exit, _, stderr) = Rt.Invoke("init", "--preset", "tiny", "--out", dir.Path);
        Assert.Equal(1, exit);
        Assert.Contains("not empty", stderr);
        Assert.Equal("mine", File.ReadAllText(dir["keep.txt"]));

        Assert.NotEqual(0, Rt.Invoke("init", "--preset", "huge", "--out", dir["x"]).Exit);

        File.WriteAllText(dir["bad.json"], "{ not json");
        var bad = Rt.Invoke("init", "--preset", "tiny", "--out", dir["y"], "--tokenizer", dir["bad.json"]);
        Assert.Equal(1, bad.Exit);
        Assert.Contains("bad.json", bad.Err);
        Assert.False(Directory.Exists(dir["y"]), "nothing is written when the tokenizer is bad");
    }
}
