using System.Text.Json;
using System.Text.Json.Nodes;

namespace Runtime.Model.Lora;

/// <summary>A PEFT adapter folder that cannot be read: missing files, bad JSON, unsupported settings, wrong tensors.</summary>
public sealed class PeftAdapterException(string message) : Exception(message);

/// <summary>
/// adapter_config.json as PEFT writes it (<c>json.dumps(config, indent=2, sort_keys=True)</c>, no trailing newline) and
/// as Runtime reads it. Written keys: the ones every PEFT release since rsLoRA and DoRA (0.9) knows, so older and newer
/// PEFT versions load the file; newer PEFT fills its other keys with their defaults.
/// </summary>
public static class PeftAdapterConfig
{
    public const string FileName = "adapter_config.json";

    /// <summary>PEFT's default target_modules for model_type "llama" when a config names none.</summary>
    static readonly string[] LlamaDefaultTargets = ["q_proj", "v_proj"];

    public static string ToJson(LoraConfig config, string? baseModelNameOrPath) => PythonJson.Dumps(new Dictionary<string, object?>
    {
        ["alpha_pattern"] = new Dictionary<string, object?>(),
        ["base_model_name_or_path"] = baseModelNameOrPath,
        ["bias"] = "none",
        ["fan_in_fan_out"] = false,
        ["inference_mode"] = true,
        ["init_lora_weights"] = true,
        ["layers_pattern"] = null,
        ["layers_to_transform"] = null,
        // PEFT types lora_alpha as int; a fractional alpha is written as the float it is.
        ["lora_alpha"] = config.Alpha == Math.Floor(config.Alpha) && config.Alpha < int.MaxValue ? (object)(int)config.Alpha : config.Alpha,
        ["lora_dropout"] = config.Dropout,
        ["modules_to_save"] = null,
        ["peft_type"] = "LORA",
        ["r"] = config.Rank,
        ["rank_pattern"] = new Dictionary<string, object?>(),
        ["revision"] = null,
        ["target_modules"] = config.Targets.ToList(),
        ["task_type"] = "CAUSAL_LM",
        ["use_dora"] = false,
        ["use_rslora"] = config.UseRslora,
    });

    /// <summary>
    /// Reads the settings Runtime supports and refuses, naming the key, what it cannot reproduce: another peft_type,
    /// DoRA, biases, fan_in_fan_out, per-module rank_pattern / alpha_pattern, modules_to_save, layers_to_transform,
    /// lora_bias, or target_modules outside Llama's seven projections. Missing keys take PEFT's defaults
    /// (r 8, lora_alpha 8, lora_dropout 0.0; target_modules ["q_proj", "v_proj"] for Llama).
    /// </summary>
    public static (LoraConfig Config, string? BaseModelNameOrPath) Parse(string json, string source)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new PeftAdapterException($"{source}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new PeftAdapterException($"{source}: invalid JSON at line {e.LineNumber + 1}: {e.Message}");
        }
        PeftAdapterException Bad(string key, string why) => new($"{source}: '{key}' {why}");

        string? Text(string key) => root[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            var other => throw Bad(key, $"must be a string, got {other.ToJsonString()}"),
        };
        bool Flag(string key) => root[key] switch
        {
            null => false,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            var other => throw Bad(key, $"must be true or false, got {other.ToJsonString()}"),
        };
        double? Number(string key) => root[key] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.GetValue<double>(),
            var other => throw Bad(key, $"must be a number, got {other.ToJsonString()}"),
        };
        void MustBeEmpty(string key, string why)
        {
            var node = root[key];
            var empty = node is null || node is JsonObject { Count: 0 } || node is JsonArray { Count: 0 };
            if (!empty) throw Bad(key, $"is {node!.ToJsonString()}; {why}");
        }

        var peftType = Text("peft_type") ?? "LORA";
        if (peftType != "LORA") throw Bad("peft_type", $"is \"{peftType}\"; only LoRA adapters (\"LORA\") are supported");
        if (Flag("use_dora")) throw Bad("use_dora", "is true; DoRA adapters are not supported");
        var bias = Text("bias") ?? "none";
        if (bias != "none") throw Bad("bias", $"is \"{bias}\"; only \"none\" is supported (Llama projections have no bias)");
        if (Flag("lora_bias")) throw Bad("lora_bias", "is true; LoRA biases are not supported");
        if (Flag("fan_in_fan_out")) throw Bad("fan_in_fan_out", "is true; Llama's Linear layers store [out, in]");
        MustBeEmpty("rank_pattern", "per-module ranks are not supported: every adapted projection must use r");
        MustBeEmpty("alpha_pattern", "per-module alphas are not supported: every adapted projection must use lora_alpha");
        MustBeEmpty("modules_to_save", "fully trained extra modules are not supported");
        MustBeEmpty("layers_to_transform", "adapters on a subset of layers are not supported");

        var rank = Number("r") ?? 8;
        if (rank != Math.Floor(rank) || rank <= 0 || rank > int.MaxValue) throw Bad("r", $"must be a positive integer, got {rank}");
        var alpha = Number("lora_alpha") ?? 8;
        var dropout = Number("lora_dropout") ?? 0.0;
        var targets = ParseTargets(root["target_modules"], Bad);
        try
        {
            return (new LoraConfig((int)rank, alpha, dropout, targets, Flag("use_rslora")), Text("base_model_name_or_path"));
        }
        catch (ArgumentException e)
        {
            throw new PeftAdapterException($"{source}: {e.Message}");
        }
    }

    static IReadOnlyList<string> ParseTargets(JsonNode? node, Func<string, string, PeftAdapterException> bad)
    {
        const string key = "target_modules";
        switch (node)
        {
            case null:
                return LlamaDefaultTargets;
            case JsonValue v when v.TryGetValue<string>(out var s):
                // A string is a regex over module paths in PEFT; "all-linear" means every linear layer but the head.
                if (s == "all-linear") return LoraConfig.AllTargets;
                if (LoraConfig.AllTargets.Contains(s)) return [s];
                throw bad(key, $"is the pattern \"{s}\"; give a list of projections ({string.Join(", ", LoraConfig.AllTargets)}) or \"all-linear\"");
            case JsonArray list:
                var names = list.Select(t => t is JsonValue e && e.TryGetValue<string>(out var name)
                    ? name
                    : throw bad(key, $"must hold module names, got {t?.ToJsonString() ?? "null"}")).ToList();
                var unknown = names.Where(n => !LoraConfig.AllTargets.Contains(n)).ToList();
                if (unknown.Count > 0)
                    throw bad(key, $"names {string.Join(", ", unknown.Select(u => $"\"{u}\""))}, which Runtime cannot adapt; Llama's projections are {string.Join(", ", LoraConfig.AllTargets)}");
                if (names.Count == 0) throw bad(key, "is empty");
                return names;
            default:
                throw bad(key, $"must be a list of module names, got {node.ToJsonString()}");
        }
    }
}
