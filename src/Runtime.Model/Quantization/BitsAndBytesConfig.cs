using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.Config;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// The <c>quantization_config</c> object transformers writes into config.json for a bitsandbytes 4-bit model
/// (<c>BitsAndBytesConfig.to_dict()</c>), and what a reader needs from it.
/// </summary>
/// <param name="ComputeDType"><c>bnb_4bit_compute_dtype</c>: the dtype the dequantized weight and the matmul use.</param>
/// <param name="DoubleQuant"><c>bnb_4bit_use_double_quant</c>.</param>
/// <param name="SkipModules"><c>llm_int8_skip_modules</c>: modules left unquantized (null: transformers' default, which
/// keeps the output head unquantized).</param>
public sealed record BitsAndBytesConfig(ScalarType ComputeDType, bool DoubleQuant, IReadOnlyList<string>? SkipModules)
{
    public const string QuantMethod = "bitsandbytes";

    /// <summary>QLoRA's setting: NF4, double quantization, bf16 compute.</summary>
    public static BitsAndBytesConfig QLoRA { get; } = new(ScalarType.BFloat16, true, null);

    /// <summary>
    /// The 13 keys of <c>BitsAndBytesConfig.to_dict()</c>, sorted as config.json (written with sort_keys) has them.
    /// <c>llm_int8_threshold</c> is written as <c>6.0</c>: transformers rejects an integer there ("must be a float").
    /// </summary>
    public JsonObject ToJson()
    {
        var skip = SkipModules is null ? null : new JsonArray([.. SkipModules.Select(m => (JsonNode?)JsonValue.Create(m))]);
        return new JsonObject
        {
            ["_load_in_4bit"] = true,
            ["_load_in_8bit"] = false,
            ["bnb_4bit_compute_dtype"] = Nf4QuantState.TorchDTypeName(ComputeDType),
            ["bnb_4bit_quant_storage"] = "uint8",
            ["bnb_4bit_quant_type"] = Nf4QuantState.QuantType,
            ["bnb_4bit_use_double_quant"] = DoubleQuant,
            ["llm_int8_enable_fp32_cpu_offload"] = false,
            ["llm_int8_has_fp16_weight"] = false,
            ["llm_int8_skip_modules"] = skip,
            // A JsonValue parsed from text keeps its text, so this serializes as 6.0 rather than 6.
            ["llm_int8_threshold"] = JsonNode.Parse("6.0"),
            ["load_in_4bit"] = true,
            ["load_in_8bit"] = false,
            ["quant_method"] = QuantMethod,
        };
    }

    /// <summary>
    /// Reads <c>quantization_config</c> from a parsed config.json. Returns null when the model is not quantized; throws
    /// <see cref="ModelConfigException"/> naming <paramref name="source"/> and the key when it is quantized in a way this
    /// runtime cannot load (another method, 8-bit, fp4, a non-uint8 storage).
    /// Missing keys take transformers' defaults (older transformers wrote fewer keys).
    /// </summary>
    public static BitsAndBytesConfig? FromModelConfig(JsonObject modelConfig, string source = "config.json")
    {
        if (modelConfig["quantization_config"] is not { } node) return null;
        ModelConfigException Bad(string key, string why) => new($"{source}: quantization_config.{key} {why}");
        if (node is not JsonObject q) throw new ModelConfigException($"{source}: quantization_config must be an object");

        string? Text(string key) => q[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            var other => throw Bad(key, $"must be a string, got {other.ToJsonString()}"),
        };
        bool Flag(string key, bool fallback) => q[key] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            var other => throw Bad(key, $"must be true or false, got {other.ToJsonString()}"),
        };

        var method = Text("quant_method") ?? QuantMethod; // transformers' BitsAndBytesConfig sets it itself
        if (method != QuantMethod) throw Bad("quant_method", $"is '{method}'; only '{QuantMethod}' (NF4) models can be loaded");
        if (Flag("load_in_8bit", Flag("_load_in_8bit", false))) throw Bad("load_in_8bit", "is true; only 4-bit NF4 models can be loaded");
        if (!Flag("load_in_4bit", Flag("_load_in_4bit", false))) throw Bad("load_in_4bit", "is not true; only 4-bit NF4 models can be loaded");
        var quantType = Text("bnb_4bit_quant_type") ?? "fp4"; // transformers' default
        if (quantType != Nf4QuantState.QuantType) throw Bad("bnb_4bit_quant_type", $"is '{quantType}'; only 'nf4' is supported");
        var storage = Text("bnb_4bit_quant_storage") ?? "uint8";
        if (storage != "uint8") throw Bad("bnb_4bit_quant_storage", $"is '{storage}'; only 'uint8' is supported");
        var computeName = Text("bnb_4bit_compute_dtype") ?? "float32"; // transformers' default
        var compute = Nf4QuantState.ParseTorchDType(computeName)
            ?? throw Bad("bnb_4bit_compute_dtype", $"is '{computeName}'; expected bfloat16, float16 or float32");

        IReadOnlyList<string>? skip = q["llm_int8_skip_modules"] switch
        {
            null => null,
            JsonArray a => [.. a.Select(m => m is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad("llm_int8_skip_modules", "must hold strings"))],
            var other => throw Bad("llm_int8_skip_modules", $"must be a list or null, got {other.ToJsonString()}"),
        };
        return new BitsAndBytesConfig(compute, Flag("bnb_4bit_use_double_quant", false), skip);
    }

    /// <summary>Reads <c>{folder}/config.json</c>; null when the model there is not quantized.</summary>
    public static BitsAndBytesConfig? FromModelFolder(string folder)
    {
        var path = Path.Combine(folder, "config.json");
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: not found");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new ModelConfigException($"{path}: invalid JSON: {e.Message}"); }
        return root is JsonObject config
            ? FromModelConfig(config, path)
            : throw new ModelConfigException($"{path}: must hold a JSON object");
    }

    /// <summary>
    /// Whether transformers leaves the linear module at dotted path <paramref name="modulePath"/> (e.g.
    /// <c>model.layers.0.mlp.up_proj</c>) unquantized: its <c>replace_with_bnb_linear</c> skips a module whose own name
    /// is in the list, whose path equals an entry, or whose path contains an entry followed by '.'. With no list it
    /// skips the output embedding, which for Llama is <c>lm_head</c>.
    /// </summary>
    public bool Skips(string modulePath)
    {
        var skip = SkipModules ?? ["lm_head"];
        var leaf = modulePath[(modulePath.LastIndexOf('.') + 1)..];
        return skip.Any(s => s == leaf || s == modulePath || modulePath.Contains(s + ".", StringComparison.Ordinal));
    }
}
