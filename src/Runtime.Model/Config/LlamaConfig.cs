using System.Text.Json;
using System.Text.Json.Nodes;

namespace Runtime.Model.Config;

/// <summary>
/// The architecture of a Llama 3.x model as Hugging Face's config.json states it. Parsing accepts all three spellings
/// of the rotary settings: <c>rope_scaling.rope_type</c>, the older <c>rope_scaling.type</c>, and transformers v5's
/// <c>rope_parameters</c> (which also carries <c>rope_theta</c>).
/// </summary>
public sealed record LlamaConfig
{
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 131072;
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 500000;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int BosTokenId { get; init; } = 128000;
    public IReadOnlyList<int> EosTokenIds { get; init; } = [128001];
    public string TorchDtype { get; init; } = "bfloat16";

    /// <summary>Query heads that share one key/value head.</summary>
    public int KeyValueGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Exact parameter count of the whole model (embedding, layers, final norm, head unless tied).</summary>
    public long ParameterCount => EmbeddingParameters * (TieWordEmbeddings ? 1 : 2) + NumHiddenLayers * LayerParameters + HiddenSize;

    public long EmbeddingParameters => (long)VocabSize * HiddenSize;

    /// <summary>Parameters of one decoder layer: the seven projections and two norms.</summary>
    public long LayerParameters => LayerLinearParameters + 2L * HiddenSize;

    /// <summary>Parameters of one decoder layer's seven projections (the weights LoRA and NF4 act on).</summary>
    public long LayerLinearParameters =>
        (long)HiddenSize * NumAttentionHeads * HeadDim * 2          // q_proj, o_proj
        + (long)HiddenSize * NumKeyValueHeads * HeadDim * 2         // k_proj, v_proj
        + 3L * HiddenSize * IntermediateSize;                       // gate_proj, up_proj, down_proj

    /// <summary>Checks the relations the forward relies on; throws naming the key (and the source) that breaks them.</summary>
    public LlamaConfig Validate(string source = "config")
    {
        void Positive(string key, double value)
        {
            if (!(value > 0)) throw new ModelConfigException($"{source}: '{key}' must be positive (got {value})");
        }
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("head_dim", HeadDim);
        Positive("vocab_size", VocabSize);
        Positive("rms_norm_eps", RmsNormEps);
        Positive("rope_theta", RopeTheta);
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new ModelConfigException(
                $"{source}: 'num_attention_heads' ({NumAttentionHeads}) must be a multiple of 'num_key_value_heads' ({NumKeyValueHeads})");
        if (HeadDim % 2 != 0)
            throw new ModelConfigException($"{source}: 'head_dim' ({HeadDim}) must be even for rotary embeddings");
        if (RopeScaling is { } s)
        {
            Positive("rope_scaling.factor", s.Factor);
            Positive("rope_scaling.original_max_position_embeddings", s.OriginalMaxPositionEmbeddings);
            if (!(s.HighFreqFactor > s.LowFreqFactor))
                throw new ModelConfigException(
                    $"{source}: 'rope_scaling.high_freq_factor' ({s.HighFreqFactor}) must exceed 'low_freq_factor' ({s.LowFreqFactor})");
        }
        if (EosTokenIds.Count == 0) throw new ModelConfigException($"{source}: 'eos_token_id' is empty");
        return this;
    }

    public static LlamaConfig Load(string path)
    {
        var file = File.Exists(path) ? path : Path.Combine(path, "config.json");
        if (!File.Exists(file)) throw new ModelConfigException($"{file}: no such file (a Hugging Face model folder needs config.json)");
        return Parse(File.ReadAllText(file), file);
    }

    public static LlamaConfig Parse(string json, string source = "config.json")
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new ModelConfigException($"{source}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{source}: invalid JSON at line {e.LineNumber + 1}: {e.Message}");
        }

        var modelType = OptionalString(root, "model_type", source);
        if (modelType is not null && modelType != "llama")
            throw new ModelConfigException($"{source}: 'model_type' is \"{modelType}\"; Runtime reads Llama models (\"llama\")");
        var act = OptionalString(root, "hidden_act", source);
        if (act is not null && act != "silu")
            throw new ModelConfigException($"{source}: 'hidden_act' is \"{act}\"; Llama uses \"silu\"");
        foreach (var biasKey in new[] { "attention_bias", "mlp_bias" })
            if (root[biasKey] is JsonValue v && v.TryGetValue<bool>(out var b) && b)
                throw new ModelConfigException($"{source}: '{biasKey}' = true is not supported (Llama has no biases)");

        int hidden = RequiredInt(root, "hidden_size", source);
        int heads = RequiredInt(root, "num_attention_heads", source);

        // transformers v5 moves rope_theta and the scaling into rope_parameters.
        var ropeParameters = root["rope_parameters"] as JsonObject;
        var scalingNode = root["rope_scaling"] as JsonObject ?? ropeParameters;
        double theta = OptionalDouble(root, "rope_theta", source)
                       ?? (ropeParameters is null ? null : OptionalDouble(ropeParameters, "rope_theta", source + ": rope_parameters"))
                       ?? 10000.0;

        return new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = RequiredInt(root, "intermediate_size", source),
            NumHiddenLayers = RequiredInt(root, "num_hidden_layers", source),
            NumAttentionHeads = heads,
            NumKeyValueHeads = OptionalInt(root, "num_key_value_heads", source) ?? heads,
            HeadDim = OptionalInt(root, "head_dim", source) ?? (heads > 0 ? hidden / heads : 0),
            VocabSize = RequiredInt(root, "vocab_size", source),
            MaxPositionEmbeddings = OptionalInt(root, "max_position_embeddings", source) ?? 2048,
            RmsNormEps = OptionalDouble(root, "rms_norm_eps", source) ?? 1e-6,
            RopeTheta = theta,
            RopeScaling = scalingNode is null ? null : ParseScaling(scalingNode, source),
            TieWordEmbeddings = root["tie_word_embeddings"] is JsonValue t && t.TryGetValue<bool>(out var tied) && tied,
            BosTokenId = OptionalInt(root, "bos_token_id", source) ?? 128000,
            EosTokenIds = ParseEos(root["eos_token_id"], source),
            TorchDtype = OptionalString(root, "torch_dtype", source) ?? OptionalString(root, "dtype", source) ?? "float32",
        }.Validate(source);
    }

    static RopeScaling? ParseScaling(JsonObject node, string source)
    {
        var type = OptionalString(node, "rope_type", source) ?? OptionalString(node, "type", source);
        switch (type)
        {
            case null or "default":
                return null;
            case RopeScaling.Llama3Type:
                var at = source + ": rope_scaling";
                return new RopeScaling(
                    RequiredDouble(node, "factor", at),
                    OptionalDouble(node, "low_freq_factor", at) ?? 1.0,
                    OptionalDouble(node, "high_freq_factor", at) ?? 4.0,
                    RequiredInt(node, "original_max_position_embeddings", at));
            default:
                throw new ModelConfigException($"{source}: 'rope_scaling.rope_type' \"{type}\" is not supported (use \"llama3\" or none)");
        }
    }

    static IReadOnlyList<int> ParseEos(JsonNode? node, string source) => node switch
    {
        null => [128001],
        JsonArray a => a.Select((x, i) => x is JsonValue v && v.TryGetValue<int>(out var id)
            ? id
            : throw new ModelConfigException($"{source}: 'eos_token_id[{i}]' is not an integer")).ToArray(),
        JsonValue v when v.TryGetValue<int>(out var id) => [id],
        _ => throw new ModelConfigException($"{source}: 'eos_token_id' must be an integer or a list of integers"),
    };

    static int RequiredInt(JsonObject o, string key, string source) =>
        OptionalInt(o, key, source) ?? throw new ModelConfigException($"{source}: missing required key '{key}'");

    static double RequiredDouble(JsonObject o, string key, string source) =>
        OptionalDouble(o, key, source) ?? throw new ModelConfigException($"{source}: missing required key '{key}'");

    static int? OptionalInt(JsonObject o, string key, string source) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue => (int)d,
        _ => throw new ModelConfigException($"{source}: '{key}' must be an integer"),
    };

    static double? OptionalDouble(JsonObject o, string key, string source) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        _ => throw new ModelConfigException($"{source}: '{key}' must be a number"),
    };

    static string? OptionalString(JsonObject o, string key, string source) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => throw new ModelConfigException($"{source}: '{key}' must be a string"),
    };

    /// <summary>config.json as transformers writes it for LlamaForCausalLM (rope_scaling spelled with rope_type).</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? JsonValue.Create(EosTokenIds[0]) : new JsonArray(EosTokenIds.Select(e => (JsonNode)e).ToArray()),
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = IntermediateSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["mlp_bias"] = false,
            ["model_type"] = "llama",
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["pretraining_tp"] = 1,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_scaling"] = RopeScaling is { } s
                ? new JsonObject
                {
                    ["factor"] = s.Factor,
                    ["high_freq_factor"] = s.HighFreqFactor,
                    ["low_freq_factor"] = s.LowFreqFactor,
                    ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
                    ["rope_type"] = RopeScaling.Llama3Type,
                }
                : null,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
            ["vocab_size"] = VocabSize,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
