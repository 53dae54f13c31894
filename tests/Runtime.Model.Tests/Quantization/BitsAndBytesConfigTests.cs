using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.Config;
using Runtime.Model.Quantization;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class BitsAndBytesConfigTests
{
    [Fact]
    public void Writes_the_keys_of_transformers_to_dict_sorted()
    {
        var json = BitsAndBytesConfig.QLoRA.ToJson().ToJsonString();
        Assert.Equal(
            "{\"_load_in_4bit\":true,\"_load_in_8bit\":false,\"bnb_4bit_compute_dtype\":\"bfloat16\"," +
            "\"bnb_4bit_quant_storage\":\"uint8\",\"bnb_4bit_quant_type\":\"nf4\",\"bnb_4bit_use_double_quant\":true," +
            "\"llm_int8_enable_fp32_cpu_offload\":false,\"llm_int8_has_fp16_weight\":false,\"llm_int8_skip_modules\":null," +
            "\"llm_int8_threshold\":6.0,\"load_in_4bit\":true,\"load_in_8bit\":false,\"quant_method\":\"bitsandbytes\"}",
            json);
    }

    [Fact]
    public void Skip_modules_and_compute_dtype_are_written()
    {
        var config = new BitsAndBytesConfig(ScalarType.Float16, false, ["lm_head", "model.embed_tokens"]).ToJson();
        Assert.Equal("float16", (string?)config["bnb_4bit_compute_dtype"]);
        Assert.False((bool?)config["bnb_4bit_use_double_quant"]);
        Assert.Equal("[\"lm_head\",\"model.embed_tokens\"]", config["llm_int8_skip_modules"]!.ToJsonString());
    }

    [Fact]
    public void Round_trips_through_a_model_config()
    {
        var original = new BitsAndBytesConfig(ScalarType.BFloat16, true, ["lm_head"]);
        var modelConfig = new JsonObject { ["model_type"] = "llama", ["quantization_config"] = original.ToJson() };
        var text = modelConfig.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var read = BitsAndBytesConfig.FromModelConfig((JsonObject)JsonNode.Parse(text)!);
        Assert.NotNull(read);
        Assert.Equal(ScalarType.BFloat16, read.ComputeDType);
        Assert.True(read.DoubleQuant);
        Assert.Equal(["lm_head"], read.SkipModules!);
    }

    [Fact]
    public void Recognises_an_older_transformers_config_from_a_folder()
    {
        // As older transformers wrote it: no _load_in_4bit or bnb_4bit_quant_storage keys.
        const string config = """
            {
              "architectures": ["LlamaForCausalLM"],
              "quantization_config": {
                "bnb_4bit_compute_dtype": "bfloat16",
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": true,
                "llm_int8_enable_fp32_cpu_offload": false,
                "llm_int8_has_fp16_weight": false,
                "llm_int8_skip_modules": null,
                "llm_int8_threshold": 6.0,
                "load_in_4bit": true,
                "load_in_8bit": false,
                "quant_method": "bitsandbytes"
              }
            }
            """;
        var folder = Directory.CreateTempSubdirectory("nf4-config-");
        try
        {
            File.WriteAllText(Path.Combine(folder.FullName, "config.json"), config);
            var read = BitsAndBytesConfig.FromModelFolder(folder.FullName);
            Assert.NotNull(read);
            Assert.Equal(ScalarType.BFloat16, read.ComputeDType);
            Assert.True(read.DoubleQuant);
            Assert.Null(read.SkipModules);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public void Unquantized_model_gives_null()
    {
        Assert.Null(BitsAndBytesConfig.FromModelConfig(new JsonObject { ["model_type"] = "llama" }));
    }

    [Theory]
    [InlineData("quant_method", "\"gptq\"", "quant_method")]
    [InlineData("bnb_4bit_quant_type", "\"fp4\"", "bnb_4bit_quant_type")]
    [InlineData("load_in_8bit", "true", "load_in_8bit")]
    [InlineData("load_in_4bit", "false", "load_in_4bit")]
    [InlineData("bnb_4bit_quant_storage", "\"bfloat16\"", "bnb_4bit_quant_storage")]
    [InlineData("bnb_4bit_compute_dtype", "\"int8\"", "bnb_4bit_compute_dtype")]
    public void Unsupported_settings_are_rejected_naming_the_key(string key, string value, string named)
    {
        var q = BitsAndBytesConfig.QLoRA.ToJson();
        q[key] = JsonNode.Parse(value);
        if (key == "load_in_4bit") q["_load_in_4bit"] = false;
        var e = Assert.Throws<ModelConfigException>(
            () => BitsAndBytesConfig.FromModelConfig(new JsonObject { ["quantization_config"] = q }, "/m/config.json"));
        Assert.Contains("/m/config.json", e.Message);
        Assert.Contains(named, e.Message);
    }

    [Theory]
    [InlineData("lm_head", true)]
    [InlineData("model.layers.0.self_attn.q_proj", false)]
    [InlineData("model.layers.0.mlp.down_proj", false)]
    public void Default_skip_list_keeps_the_head_unquantized(string module, bool skipped)
    {
        Assert.Equal(skipped, BitsAndBytesConfig.QLoRA.Skips(module));
    }

    [Theory]
    [InlineData("model.layers.0.mlp.down_proj", true)]   // its own name is listed
    [InlineData("model.layers.1.self_attn.o_proj", true)] // an entry followed by '.' is in its path
    [InlineData("model.layers.10.self_attn.o_proj", false)]
    [InlineData("lm_head", false)]
    public void Explicit_skip_list_matches_like_transformers(string module, bool skipped)
    {
        var config = new BitsAndBytesConfig(ScalarType.BFloat16, true, ["down_proj", "model.layers.1"]);
        Assert.Equal(skipped, config.Skips(module));
    }
}
