using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.IO;
using Runtime.Model.Tests.Llama;
using Runtime.Model.Tests.Parity;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>adapter_config.json and adapter_model.safetensors as PEFT writes them, read back, and refused when wrong.</summary>
public sealed class PeftAdapterFileTests
{
    static readonly LoraConfig Config = new(4, 8, 0.05, ["q_proj", "v_proj", "down_proj"]);

    /// <summary>A micro model with an adapter whose B is non-zero, so the adapter changes the logits.</summary>
    static LlamaSlice AdaptedModel(LoraConfig config, bool tied = false, int seed = 3)
    {
        var model = MicroLlama.Load(MicroLlama.Config(tied), MicroLlama.Options(ScalarType.Float32, AttentionImplementation.ScaledDotProduct));
        LoraInjector.Inject(model, config, seed);
        using var g = new Generator((ulong)seed);
        using (no_grad())
            foreach (var (_, p) in LoraInjector.Targets(model, config))
                p.LoraB!.copy_(randn(p.LoraB!.shape, generator: g) * 0.2);
        return model;
    }

    static float[] Logits(LlamaSlice model)
    {
        using var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(11, 1), MicroLlama.RandomTokens(11, 2));
        using var positions = AttentionContext.SequentialPositions(2, 11);
        using var _ = no_grad();
        using var logits = model.forward(tokens, positions);
        return logits.data<float>().ToArray();
    }

    static JsonObject Header(string file)
    {
        var bytes = File.ReadAllBytes(file);
        var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, length % 8);
        return (JsonObject)JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, length))!;
    }

    static List<string> TopLevelKeys(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateObject().Select(p => p.Name).ToList();
    }

    [Fact]
    public void Saved_files_use_PEFT_names_and_config_layout_and_load_back_to_the_same_logits()
    {
        using var folder = new TempFolder();
        var adapterFolder = Path.Combine(folder.Path, "adapter");
        using var model = AdaptedModel(Config);
        var expected = Logits(model);
        PeftAdapter.Save(adapterFolder, LoraInjector.AdapterTensors(model), Config, "meta-llama/Llama-3.1-8B");

        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"], Directory.GetFiles(adapterFolder).Select(f => Path.GetFileName(f)!).Order().ToArray());
        Assert.Equal([Path.GetFileName(adapterFolder)], Directory.GetFileSystemEntries(folder.Path).Select(f => Path.GetFileName(f)!).ToArray());

        var header = Header(Path.Combine(adapterFolder, "adapter_model.safetensors"));
        Assert.Equal("{\"format\":\"pt\"}", header["__metadata__"]!.ToJsonString());
        var names = header.Select(p => p.Key).Where(k => k != "__metadata__").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(3 * 3 * 2, names.Count);
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", names);
        Assert.Contains("base_model.model.model.layers.2.mlp.down_proj.lora_B.weight", names);
        Assert.All(names, n => Assert.Equal("F32", header[n]!["dtype"]!.GetValue<string>()));
        Assert.Equal("[4,32]", header["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]!["shape"]!.ToJsonString());
        Assert.Equal("[32,4]", header["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]!["shape"]!.ToJsonString());

        var json = File.ReadAllText(Path.Combine(adapterFolder, "adapter_config.json"));
        var keys = TopLevelKeys(json);
        Assert.Equal(keys.Order(StringComparer.Ordinal), keys);
        Assert.StartsWith("{\n  \"alpha_pattern\": {},\n  \"base_model_name_or_path\": \"meta-llama/Llama-3.1-8B\",\n", json);
        Assert.EndsWith("\n}", json); // json.dumps adds no newline
        foreach (var line in new[]
                 {
                     "\"bias\": \"none\"", "\"fan_in_fan_out\": false", "\"inference_mode\": true", "\"init_lora_weights\": true",
                     "\"lora_alpha\": 8,", "\"lora_dropout\": 0.05,", "\"modules_to_save\": null", "\"peft_type\": \"LORA\"", "\"r\": 4,",
                     "\"rank_pattern\": {}", "\"target_modules\": [\n    \"q_proj\",\n    \"v_proj\",\n    \"down_proj\"\n  ]",
                     "\"task_type\": \"CAUSAL_LM\"", "\"use_dora\": false", "\"use_rslora\": false",
                 })
            Assert.Contains(line, json);

        using var reloaded = MicroLlama.Load(MicroLlama.Config(false), MicroLlama.Options(ScalarType.Float32, AttentionImplementation.ScaledDotProduct));
        var config = PeftAdapter.LoadInto(reloaded, adapterFolder);
        Assert.Equal(Config, config);
        Assert.Equal(expected, Logits(reloaded));
        Assert.DoesNotContain(LoraInjector.TrainableParameters(reloaded), p => LoraInjector.IsAdapterParameter(p.Name)); // inference by default

        using var loaded = PeftAdapter.Load(adapterFolder);
        Assert.Equal("meta-llama/Llama-3.1-8B", loaded.BaseModelNameOrPath);
        foreach (var (name, tensor) in LoraInjector.AdapterTensors(model))
            Assert.True(loaded.Tensors[name].eq(tensor).all().item<bool>(), name);
    }

    [Fact]
    public void Config_matches_the_one_PEFT_wrote_for_the_same_settings()
    {
        var fixture = File.ReadAllText(HfFixtures.Path_(Path.Combine("micro-untied-lora", "adapter_config.json")));
        var peft = (JsonObject)JsonNode.Parse(fixture)!;
        var ours = (JsonObject)JsonNode.Parse(PeftAdapterConfig.ToJson(new LoraConfig(4, 8, 0.0, LoraConfig.AllTargets), null))!;
        foreach (var (key, value) in ours)
        {
            Assert.True(peft.ContainsKey(key), $"PEFT 0.21 writes no '{key}'");
            if (key == "target_modules")
                Assert.Equal(peft[key]!.AsArray().Select(t => t!.GetValue<string>()).Order(), value!.AsArray().Select(t => t!.GetValue<string>()).Order());
            else
                Assert.True(JsonNode.DeepEquals(peft[key], value), $"{key}: PEFT {peft[key]?.ToJsonString()}, Runtime {value?.ToJsonString()}");
        }
        // Numbers are spelled as Python spells them.
        Assert.Contains("\"lora_dropout\": 0.0,", fixture);
        Assert.Contains("\"lora_dropout\": 0.0,", PeftAdapterConfig.ToJson(new LoraConfig(4, 8, 0.0, LoraConfig.AllTargets), null));
        Assert.Contains("\"base_model_name_or_path\": \"mod\\u00e8le\"", PeftAdapterConfig.ToJson(Config, "modèle"));
        Assert.Contains("\"lora_alpha\": 2.5,", PeftAdapterConfig.ToJson(new LoraConfig(4, 2.5, 0.0, ["q_proj"]), null));

        var (parsed, baseModel) = PeftAdapterConfig.Parse(fixture, "fixture");
        Assert.Equal(new LoraConfig(4, 8, 0.0, LoraConfig.AllTargets), parsed);
        Assert.Null(baseModel);
        Assert.Equal(4.0, PeftAdapterConfig.Parse("{\"r\": 16, \"lora_alpha\": 16, \"use_rslora\": true, \"target_modules\": \"all-linear\"}", "x").Config.Scaling);
    }

    [Fact]
    public void A_slice_attaches_only_its_layers_and_chained_slices_give_the_whole_models_logits()
    {
        using var folder = new TempFolder();
        using var model = AdaptedModel(Config);
        PeftAdapter.Save(folder.Path, LoraInjector.AdapterTensors(model), Config);
        var options = MicroLlama.Options(ScalarType.Float32, AttentionImplementation.ScaledDotProduct);
        var config = MicroLlama.Config(false);
        using var first = MicroLlama.Load(config, options, new LlamaSliceSpec(0, 1, true, false));
        using var last = MicroLlama.Load(config, options, new LlamaSliceSpec(1, 3, false, true));
        PeftAdapter.LoadInto(first, folder.Path, trainable: true);
        PeftAdapter.LoadInto(last, folder.Path, trainable: true);

        Assert.Equal(3 * 2, LoraInjector.TrainableParameters(first).Count);
        Assert.All(LoraInjector.TrainableParameters(first), p => Assert.StartsWith("model.layers.0.", p.Name));
        Assert.Equal(2 * 3 * 2, LoraInjector.TrainableParameters(last).Count);
        Assert.All(last.named_parameters().Where(p => !LoraInjector.IsAdapterParameter(p.name)), p => Assert.False(p.parameter.requires_grad));

        using var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(11, 1), MicroLlama.RandomTokens(11, 2));
        using var positions = AttentionContext.SequentialPositions(2, 11);
        using var _ = no_grad();
        using var hidden = first.forward(tokens, positions);
        using var logits = last.forward(hidden, positions);
        var expected = Logits(model);
        var actual = logits.data<float>().ToArray();
        Assert.True(expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second)) < 1e-5);
    }

    [Fact]
    public void Saving_over_an_existing_adapter_replaces_it_and_leaves_no_temporary_files()
    {
        using var folder = new TempFolder();
        using var one = AdaptedModel(Config, seed: 1);
        using var two = AdaptedModel(Config, seed: 2);
        PeftAdapter.Save(folder.Path, LoraInjector.AdapterTensors(one), Config);
        PeftAdapter.Save(folder.Path, LoraInjector.AdapterTensors(two), Config);
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"], folder.FileNames());
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(folder.Path)!, AtomicFile.TemporaryPrefix + "*" + Path.GetFileName(folder.Path)));
        using var loaded = PeftAdapter.Load(folder.Path);
        const string b0 = "model.layers.0.self_attn.q_proj.lora_B.weight";
        Assert.True(loaded.Tensors[b0].eq(LoraInjector.AdapterTensors(two).Single(t => t.Name == b0).Tensor).all().item<bool>());
    }

    [Fact]
    public void Save_refuses_tensors_that_do_not_fit_the_config()
    {
        using var folder = new TempFolder();
        using var model = AdaptedModel(Config);
        var tensors = LoraInjector.AdapterTensors(model);
        var e = Assert.Throws<ArgumentException>(() => PeftAdapter.Save(folder.Path, tensors, new LoraConfig(4, 8, 0, ["q_proj", "v_proj"])));
        Assert.Contains("down_proj", e.Message);
        e = Assert.Throws<ArgumentException>(() => PeftAdapter.Save(folder.Path, tensors, new LoraConfig(8, 8, 0, Config.Targets)));
        Assert.Contains("r = 8", e.Message);
        e = Assert.Throws<ArgumentException>(() => PeftAdapter.Save(folder.Path, tensors.Where(t => !t.Name.EndsWith("lora_B.weight")), Config));
        Assert.Contains("without", e.Message);
        Assert.Empty(folder.FileNames());
    }

    /// <summary>A copy of the real PEFT adapter with its config edited and/or its tensors replaced.</summary>
    static string BrokenAdapter(TempFolder folder, Action<JsonObject>? editConfig = null,
        Func<IReadOnlyDictionary<string, Tensor>, IEnumerable<(string, Tensor)>>? editTensors = null)
    {
        var source = HfFixtures.Path_("micro-untied-lora");
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(source, "adapter_config.json")))!;
        editConfig?.Invoke(config);
        File.WriteAllText(folder.File("adapter_config.json"), config.ToJsonString());
        if (editTensors is null)
        {
            File.Copy(Path.Combine(source, "adapter_model.safetensors"), folder.File("adapter_model.safetensors"));
        }
        else
        {
            using var file = new SafeTensorsFile(Path.Combine(source, "adapter_model.safetensors"));
            var all = file.Names.ToDictionary(n => n, n => file.Load(n));
            SafeTensorsWriter.Write(folder.File("adapter_model.safetensors"), editTensors(all).Select(p => new KeyValuePair<string, Tensor>(p.Item1, p.Item2)));
            foreach (var t in all.Values) t.Dispose();
        }
        return folder.Path;
    }

    static LlamaSlice FixtureBase()
    {
        using var source = new HfModelFolder(HfFixtures.Path_("micro-untied"));
        return LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions { RequiresGrad = false });
    }

    static string LoadError(string folder)
    {
        using var model = FixtureBase();
        return Assert.Throws<PeftAdapterException>(() => PeftAdapter.LoadInto(model, folder)).Message;
    }

    [Fact]
    public void Missing_folder_or_files_are_named()
    {
        using var folder = new TempFolder();
        Assert.Contains("no such adapter folder", LoadError(Path.Combine(folder.Path, "absent")));
        Assert.Contains("adapter_config.json: not found", LoadError(folder.Path));
        File.Copy(HfFixtures.Path_(Path.Combine("micro-untied-lora", "adapter_config.json")), folder.File("adapter_config.json"));
        Assert.Contains("adapter_model.safetensors: not found", LoadError(folder.Path));
    }

    [Theory]
    [InlineData("target_modules", "[\"q_proj\", \"lm_head\"]", "lm_head")]
    [InlineData("target_modules", "\".*attn.*\"", "pattern")]
    [InlineData("rank_pattern", "{\"q_proj\": 8}", "rank_pattern")]
    [InlineData("alpha_pattern", "{\"q_proj\": 16}", "alpha_pattern")]
    [InlineData("use_dora", "true", "DoRA")]
    [InlineData("peft_type", "\"IA3\"", "peft_type")]
    [InlineData("modules_to_save", "[\"lm_head\"]", "modules_to_save")]
    [InlineData("layers_to_transform", "[0, 1]", "layers_to_transform")]
    [InlineData("bias", "\"all\"", "bias")]
    [InlineData("r", "\"four\"", "'r'")]
    public void Unsupported_settings_are_refused_naming_the_key(string key, string value, string expected)
    {
        using var folder = new TempFolder();
        var message = LoadError(BrokenAdapter(folder, c => c[key] = JsonNode.Parse(value)));
        Assert.Contains(expected, message);
        Assert.Contains("adapter_config.json", message);
    }

    [Fact]
    public void Tensors_that_do_not_fit_the_model_or_config_are_refused()
    {
        const string q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
        using (var folder = new TempFolder())
        {
            // Layer 0's q_proj adapter built for a wider model.
            var message = LoadError(BrokenAdapter(folder, editTensors: all => all.Select(p => (p.Key, p.Key == q0A ? zeros(4, 65) : p.Value))));
            Assert.Contains(q0A, message);
            Assert.Contains("[4, 65]", message);
        }
        using (var folder = new TempFolder())
        {
            var message = LoadError(BrokenAdapter(folder, editTensors: all => all.Where(p => !p.Key.Contains("layers.2.mlp.up_proj")).Select(p => (p.Key, p.Value))));
            Assert.Contains("missing", message);
            Assert.Contains("layers.2.mlp.up_proj.lora_A.weight", message);
        }
        using (var folder = new TempFolder())
        {
            var message = LoadError(BrokenAdapter(folder, editTensors: all => all.Select(p => (p.Key, p.Value)).Append(("base_model.model.lm_head.weight", zeros(256, 64)))));
            Assert.Contains("base_model.model.lm_head.weight", message);
        }
        using (var folder = new TempFolder())
        {
            var message = LoadError(BrokenAdapter(folder, c => c["target_modules"] = JsonNode.Parse("[\"q_proj\", \"k_proj\"]")));
            Assert.Contains("target_modules", message);
            Assert.Contains("does not list", message);
        }
        using (var folder = new TempFolder())
        {
            var message = LoadError(BrokenAdapter(folder, c => c["r"] = 8));
            Assert.Contains("r = 8", message);
        }
    }
}
