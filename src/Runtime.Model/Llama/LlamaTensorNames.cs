using Runtime.Model.Config;

namespace Runtime.Model.Llama;

/// <summary>A tensor of a Llama model under its Hugging Face name, with its full shape.</summary>
public sealed record LlamaTensorSpec(string Name, long[] Shape)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// Head and width counts of the attention and MLP of one layer, computed from the config in this one place so a later
/// tensor-parallel shard (heads and intermediate columns split across ranks) changes only this computation.
/// </summary>
public sealed record LlamaLayerShape(int Hidden, int Heads, int KeyValueHeads, int HeadDim, int Intermediate)
{
    public static LlamaLayerShape For(LlamaConfig config) => new(
        config.HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.IntermediateSize);

    /// <summary>Query heads per key/value head (HF's num_key_value_groups).</summary>
    public int KeyValueGroups => Heads / KeyValueHeads;

    public long QueryWidth => (long)Heads * HeadDim;

    public long KeyValueWidth => (long)KeyValueHeads * HeadDim;
}

/// <summary>The canonical Hugging Face tensor names and shapes of a Llama model, whole or per slice.</summary>
public static class LlamaTensorNames
{
    public const string EmbedTokens = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    public static string LayerPrefix(int layer) => $"model.layers.{layer}.";

    /// <summary>Norm weights are initialised to ones; every other Llama weight is a normal draw.</summary>
    public static bool IsNormWeight(string name) => name.EndsWith("norm.weight", StringComparison.Ordinal);

    /// <summary>The tensors of one decoder layer, in transformers' state_dict order.</summary>
    public static IEnumerable<LlamaTensorSpec> Layer(LlamaConfig config, int layer)
    {
        var s = LlamaLayerShape.For(config);
        var p = LayerPrefix(layer);
        yield return new(p + "self_attn.q_proj.weight", [s.QueryWidth, s.Hidden]);
        yield return new(p + "self_attn.k_proj.weight", [s.KeyValueWidth, s.Hidden]);
        yield return new(p + "self_attn.v_proj.weight", [s.KeyValueWidth, s.Hidden]);
        yield return new(p + "self_attn.o_proj.weight", [s.Hidden, s.QueryWidth]);
        yield return new(p + "mlp.gate_proj.weight", [s.Intermediate, s.Hidden]);
        yield return new(p + "mlp.up_proj.weight", [s.Intermediate, s.Hidden]);
        yield return new(p + "mlp.down_proj.weight", [s.Hidden, s.Intermediate]);
        yield return new(p + "input_layernorm.weight", [s.Hidden]);
        yield return new(p + "post_attention_layernorm.weight", [s.Hidden]);
    }

    /// <summary>
    /// Every tensor of the whole model as a Hugging Face folder stores it: <c>lm_head.weight</c> only when the
    /// embeddings are not tied. This is the list <c>rt init</c> streams to disk.
    /// </summary>
    public static IEnumerable<LlamaTensorSpec> All(LlamaConfig config)
    {
        yield return new(EmbedTokens, [config.VocabSize, config.HiddenSize]);
        for (int i = 0; i < config.NumHiddenLayers; i++)
            foreach (var t in Layer(config, i))
                yield return t;
        yield return new(FinalNorm, [config.HiddenSize]);
        if (!config.TieWordEmbeddings)
            yield return new(LmHead, [config.VocabSize, config.HiddenSize]);
    }

    /// <summary>
    /// The stored tensors a slice reads, each once. With tied embeddings the head's weight is stored as
    /// <see cref="EmbedTokens"/>, so a head slice without the embedding reads that name.
    /// </summary>
    public static IEnumerable<LlamaTensorSpec> ForSlice(LlamaConfig config, LlamaSliceSpec slice)
    {
        slice.Validate(config);
        if (slice.HasEmbedding)
            yield return new(EmbedTokens, [config.VocabSize, config.HiddenSize]);
        foreach (var layer in slice.Layers)
            foreach (var t in Layer(config, layer))
                yield return t;
        if (slice.HasHead)
        {
            yield return new(FinalNorm, [config.HiddenSize]);
            if (!config.TieWordEmbeddings)
                yield return new(LmHead, [config.VocabSize, config.HiddenSize]);
            else if (!slice.HasEmbedding)
                yield return new(EmbedTokens, [config.VocabSize, config.HiddenSize]);
        }
    }
}
