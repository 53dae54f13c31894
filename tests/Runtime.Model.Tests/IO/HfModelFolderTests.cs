using System.Text.Json;
using Runtime.Model.Config;
using Runtime.Model.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.IO;

public class HfModelFolderTests
{
    /// <summary>
    /// Six tensors in state-dict order with byte sizes 320, 640, 256, 32, 256, 160 (total 1664). With a 400-byte limit
    /// huggingface_hub's rule gives, worked out by hand: [big] (over the limit: alone, placed when met), [embed],
    /// [q0, norm0], [q1], [lm_head].
    /// </summary>
    static (List<TensorEntry> Entries, Dictionary<string, Tensor> Values, List<string> ProduceLog) Model()
    {
        var values = new Dictionary<string, Tensor>
        {
            ["model.embed_tokens.weight"] = torch.randn(10, 8),
            ["big"] = torch.randn(20, 8),
            ["model.layers.0.self_attn.q_proj.weight"] = torch.randn(8, 8),
            ["model.layers.0.input_layernorm.weight"] = torch.randn(8),
            ["model.layers.1.self_attn.q_proj.weight"] = torch.randn(8, 8),
            ["lm_head.weight"] = torch.randn(10, 8).to(ScalarType.BFloat16),
        };
        var log = new List<string>();
        var entries = values.Select(kv => new TensorEntry(kv.Key, kv.Value.dtype, kv.Value.shape, () =>
        {
            log.Add(kv.Key);
            return kv.Value.alias();
        })).ToList();
        return (entries, values, log);
    }

    static readonly Dictionary<string, string> ExpectedWeightMap = new()
    {
        ["big"] = "model-00001-of-00005.safetensors",
        ["model.embed_tokens.weight"] = "model-00002-of-00005.safetensors",
        ["model.layers.0.self_attn.q_proj.weight"] = "model-00003-of-00005.safetensors",
        ["model.layers.0.input_layernorm.weight"] = "model-00003-of-00005.safetensors",
        ["model.layers.1.self_attn.q_proj.weight"] = "model-00004-of-00005.safetensors",
        ["lm_head.weight"] = "model-00005-of-00005.safetensors",
    };

    [Fact]
    public void Sharded_round_trip_writes_an_index_like_save_pretrained()
    {
        using var temp = new TempFolder();
        var (entries, values, log) = Model();
        var layout = HfModelWriter.Write(temp.Path, entries, maxShardBytes: 400);

        Assert.Equal(1664, layout.TotalSize);
        Assert.Equal(entries.Select(e => e.Name).Order(), log.Order()); // each produced exactly once
        Assert.Equal(
            ["model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors", "model-00003-of-00005.safetensors",
             "model-00004-of-00005.safetensors", "model-00005-of-00005.safetensors", "model.safetensors.index.json"],
            temp.FileNames());

        // The index, read without the reader under test.
        var text = File.ReadAllText(temp.File("model.safetensors.index.json"));
        Assert.StartsWith("{\n  \"metadata\": {\n    \"total_size\": 1664\n  },\n  \"weight_map\": {\n", text);
        Assert.EndsWith("}\n", text);
        using var index = JsonDocument.Parse(text);
        Assert.Equal(1664, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToList();
        Assert.Equal(map.Select(p => p.Name).Order(StringComparer.Ordinal), map.Select(p => p.Name)); // sorted keys
        Assert.Equal(ExpectedWeightMap, map.ToDictionary(p => p.Name, p => p.Value.GetString()!));

        // Each shard holds exactly the tensors the index maps to it.
        foreach (var group in ExpectedWeightMap.GroupBy(p => p.Value))
        {
            using var shard = new SafeTensorsFile(temp.File(group.Key));
            Assert.Equal(group.Select(p => p.Key).Order(), shard.Names.Order());
            Assert.Equal("pt", shard.Metadata["format"]);
        }

        using var folder = new HfModelFolder(temp.Path);
        Assert.True(folder.IsSharded);
        Assert.Equal(1664, folder.IndexTotalSize);
        Assert.Equal(values.Keys.Order(StringComparer.Ordinal), folder.Names);
        foreach (var (name, expected) in values)
        {
            using var actual = folder.Load(name);
            Assert.Equal(expected.dtype, actual.dtype);
            TensorAssert.Identical(expected, actual, name);
            Assert.Equal(temp.File(ExpectedWeightMap[name]), folder.Describe(name).File);
        }
        using var slice = folder.Load("model.embed_tokens.weight", slice: new TensorSlice(1, 2, 3));
        using var narrow = values["model.embed_tokens.weight"].narrow(1, 2, 3);
        TensorAssert.Identical(narrow, slice);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void Everything_within_the_limit_becomes_one_model_safetensors_and_stale_files_go()
    {
        using var temp = new TempFolder();
        var (entries, values, _) = Model();
        HfModelWriter.Write(temp.Path, entries, maxShardBytes: 400);
        HfModelWriter.Write(temp.Path, entries); // default 5 GB: one file

        Assert.Equal(["model.safetensors"], temp.FileNames());
        using var folder = new HfModelFolder(temp.Path);
        Assert.False(folder.IsSharded);
        Assert.Null(folder.IndexTotalSize);
        Assert.Equal(values.Count, folder.Names.Count);
        using var lmHead = folder.Load("lm_head.weight", ScalarType.Float32);
        using var expected = values["lm_head.weight"].to(ScalarType.Float32);
        TensorAssert.Identical(expected, lmHead);

        HfModelWriter.Write(temp.Path, entries, maxShardBytes: 400); // and back: the single file must not win
        Assert.DoesNotContain("model.safetensors", temp.FileNames());
        using var again = new HfModelFolder(temp.Path);
        Assert.True(again.IsSharded);
        foreach (var t in values.Values) t.Dispose();
    }

    [Fact]
    public void Shards_open_lazily_and_a_damaged_shard_is_named_when_used()
    {
        using var temp = new TempFolder();
        var (entries, values, _) = Model();
        HfModelWriter.Write(temp.Path, entries, maxShardBytes: 400);
        var last = temp.File("model-00005-of-00005.safetensors");
        File.WriteAllBytes(last, File.ReadAllBytes(last)[..^4]); // truncate lm_head's shard

        using var folder = new HfModelFolder(temp.Path);
        using (var embed = folder.Load("model.embed_tokens.weight"))
            TensorAssert.Identical(values["model.embed_tokens.weight"], embed);
        var error = Assert.Throws<TensorFileException>(() => folder.Load("lm_head.weight"));
        Assert.Contains(last, error.Message);
        Assert.Contains("'lm_head.weight'", error.Message);
        foreach (var t in values.Values) t.Dispose();
    }

    static void WriteIndex(TempFolder temp, string weightMapJson) =>
        File.WriteAllText(temp.File(HfModelFolder.IndexFileName),
            "{\"metadata\": {\"total_size\": 8}, \"weight_map\": " + weightMapJson + "}");

    [Fact]
    public void Index_pointing_to_a_missing_file_fails_at_open()
    {
        using var temp = new TempFolder();
        WriteIndex(temp, "{\"a\": \"model-00001-of-00002.safetensors\"}");
        var error = Assert.Throws<TensorFileException>(() => new HfModelFolder(temp.Path));
        Assert.Contains(temp.File(HfModelFolder.IndexFileName), error.Message);
        Assert.Contains("'a'", error.Message);
        Assert.Contains("model-00001-of-00002.safetensors", error.Message);
    }

    [Fact]
    public void Tensor_listed_in_the_index_but_absent_from_its_shard()
    {
        using var temp = new TempFolder();
        using var a = torch.ones(2);
        SafeTensorsWriter.Write(temp.File("part.safetensors"), [KeyValuePair.Create("a", a)]);
        WriteIndex(temp, "{\"a\": \"part.safetensors\", \"ghost\": \"part.safetensors\"}");

        using var folder = new HfModelFolder(temp.Path);
        using (var loaded = folder.Load("a"))
            TensorAssert.Identical(a, loaded);
        var error = Assert.Throws<TensorFileException>(() => folder.Load("ghost"));
        Assert.Contains(temp.File(HfModelFolder.IndexFileName), error.Message);
        Assert.Contains(temp.File("part.safetensors"), error.Message);
        Assert.Contains("'ghost'", error.Message);
    }

    [Fact]
    public void Name_missing_from_the_index_names_the_folder()
    {
        using var temp = new TempFolder();
        using var a = torch.ones(2);
        SafeTensorsWriter.Write(temp.File("part.safetensors"), [KeyValuePair.Create("a", a)]);
        WriteIndex(temp, "{\"a\": \"part.safetensors\"}");
        using var folder = new HfModelFolder(temp.Path);
        Assert.False(folder.Contains("model.norm.weight"));
        var error = Assert.Throws<TensorFileException>(() => folder.Describe("model.norm.weight"));
        Assert.Contains(temp.Path, error.Message);
        Assert.Contains("'model.norm.weight'", error.Message);
    }

    [Theory]
    [InlineData("{\"weight_map\": 3}")]
    [InlineData("{\"metadata\": {}}")]
    [InlineData("{\"weight_map\": {\"a\": 1}}")]
    [InlineData("{\"weight_map\": {\"a\": \"../x.safetensors\"}}")]
    [InlineData("{\"weight_map\": ")]
    public void Malformed_index_names_the_index_file(string json)
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File(HfModelFolder.IndexFileName), json);
        var error = Assert.Throws<TensorFileException>(() => new HfModelFolder(temp.Path));
        Assert.Contains(temp.File(HfModelFolder.IndexFileName), error.Message);
    }

    [Fact]
    public void Folder_without_weights_names_the_folder()
    {
        using var temp = new TempFolder();
        var error = Assert.Throws<TensorFileException>(() => new HfModelFolder(temp.Path));
        Assert.Contains(temp.Path, error.Message);
        Assert.Contains("model.safetensors", error.Message);
    }

    [Fact]
    public void Config_reads_config_json_of_the_folder()
    {
        using var temp = new TempFolder();
        using var a = torch.ones(2);
        SafeTensorsWriter.Write(temp.File("model.safetensors"), [KeyValuePair.Create("a", a)]);
        File.WriteAllText(temp.File("config.json"), (LlamaPresets.Tiny with { NumHiddenLayers = 3 }).ToJson());
        using var folder = new HfModelFolder(temp.Path);
        Assert.Equal(3, folder.Config.NumHiddenLayers);
    }
}
