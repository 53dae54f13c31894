using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.TensorParallel;

namespace Runtime.Model.Llama;

/// <summary>
/// A tensor of a Llama model under its Hugging Face name, with its full shape, and the part of it a tensor-parallel
/// shard holds (<see cref="Slice"/>; null: all of it).
/// </summary>
public sealed record LlamaTensorSpec(string Name, long[] Shape, TensorSlice? Slice = null)
{
    /// <summary>Elements of the full tensor.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The shape of the part a slice holds: the full shape with the slice's length along its dimension.</summary>
    public long[] LocalShape
    {
        get
        {
            if (Slice is not { } s) return Shape;
            var local = (long[])Shape.Clone();
            local[s.Dim] = s.Length;
            return local;
        }
    }

    public override string ToString() => Slice is { } s
        ? $"{Name} [{string.Join(", ", Shape)}] (dim {s.Dim} [{s.Start}, {s.Start + s.Length}))"
        : $"{Name} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// Head and width counts of the attention and MLP of one layer, computed from the config in this one place: a
/// tensor-parallel shard holds Heads / tp query heads, KeyValueHeads / tp key/value heads and Intermediate / tp MLP
/// columns; the hidden width and head_dim are never split.
/// </summary>
public sealed record LlamaLayerShape(int Hidden, int Heads, int KeyValueHeads, int HeadDim, int Intermediate)
{
    public static LlamaLayerShape For(LlamaConfig config) => new(
        config.HiddenSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.IntermediateSize);

    /// <summary>What one tensor-parallel shard computes (the whole layer for <see cref="TensorParallelShard.None"/>).</summary>
    public static LlamaLayerShape For(LlamaConfig config, TensorParallelShard shard)
    {
        shard.Validate(config);
        return new(config.HiddenSize, config.NumAttentionHeads / shard.Size, config.NumKeyValueHeads / shard.Size,
            config.HeadDim, config.IntermediateSize / shard.Size);
    }

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

    /// <summary>
    /// The tensors of one decoder layer, in transformers' state_dict order, with full shapes; for a tensor-parallel
    /// <paramref name="shard"/> each split projection carries the rows (column-parallel) or columns (row-parallel) it
    /// holds, see <see cref="ParallelStyleOf"/>.
    /// </summary>
    public static IEnumerable<LlamaTensorSpec> Layer(LlamaConfig config, int layer, TensorParallelShard? shard = null)
    {
        var s = LlamaLayerShape.For(config);
        var tp = shard ?? TensorParallelShard.None;
        var p = LayerPrefix(layer);
        LlamaTensorSpec Spec(string name, long[] shape) => new(p + name, shape, SliceOf(p + name, shape, tp));
        yield return Spec("self_attn.q_proj.weight", [s.QueryWidth, s.Hidden]);
        yield return Spec("self_attn.k_proj.weight", [s.KeyValueWidth, s.Hidden]);
        yield return Spec("self_attn.v_proj.weight", [s.KeyValueWidth, s.Hidden]);
        yield return Spec("self_attn.o_proj.weight", [s.Hidden, s.QueryWidth]);
        yield return Spec("mlp.gate_proj.weight", [s.Intermediate, s.Hidden]);
        yield return Spec("mlp.up_proj.weight", [s.Intermediate, s.Hidden]);
        yield return Spec("mlp.down_proj.weight", [s.Hidden, s.Intermediate]);
        yield return Spec("input_layernorm.weight", [s.Hidden]);
        yield return Spec("post_attention_layernorm.weight", [s.Hidden]);
    }

    /// <summary>
    /// Megatron's split of a stored Llama tensor inside the decoder layers: q, k, v, gate and up are column-parallel
    /// (their output rows, dim 0, are split: whole heads, MLP columns), o and down row-parallel (their input columns,
    /// dim 1); everything else (norms, embedding, head) is replicated, unless a vocabulary-parallel shard splits the
    /// embedding and the head by rows (<see cref="SliceOf"/>).
    /// </summary>
    public static TensorParallelStyle ParallelStyleOf(string weightName)
    {
        if (!weightName.StartsWith("model.layers.", StringComparison.Ordinal)) return TensorParallelStyle.Replicated;
        foreach (var column in ColumnParallel)
            if (weightName.EndsWith(column, StringComparison.Ordinal)) return TensorParallelStyle.ColumnParallel;
        foreach (var row in RowParallel)
            if (weightName.EndsWith(row, StringComparison.Ordinal)) return TensorParallelStyle.RowParallel;
        return TensorParallelStyle.Replicated;
    }

    static readonly string[] ColumnParallel =
        [".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight", ".mlp.gate_proj.weight", ".mlp.up_proj.weight"];

    static readonly string[] RowParallel = [".self_attn.o_proj.weight", ".mlp.down_proj.weight"];

    /// <summary>Whether the tensor is one of the two [vocab, hidden] tables: the token embedding or the LM head.</summary>
    public static bool IsVocabularyTensor(string name) => name is EmbedTokens or LmHead;

    /// <summary>
    /// The part of a tensor of full <paramref name="shape"/> that <paramref name="shard"/> holds; null: all of it. A
    /// vocabulary-parallel shard (<see cref="TensorParallelShard.IsVocabularyParallel"/>) holds its vocabulary rows
    /// (dim 0) of the embedding and the LM head.
    /// </summary>
    public static TensorSlice? SliceOf(string weightName, long[] shape, TensorParallelShard shard)
    {
        if (!shard.IsSplit) return null;
        if (IsVocabularyTensor(weightName)) return shard.IsVocabularyParallel ? shard.Part(0, shape[0]) : null;
        return ParallelStyleOf(weightName) switch
        {
            TensorParallelStyle.ColumnParallel => shard.Part(0, shape[0]),
            TensorParallelStyle.RowParallel => shard.Part(1, shape[1]),
            _ => null,
        };
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
    /// The stored tensors a slice reads, each once, with the part a tensor-parallel slice holds. With tied embeddings the head's weight is stored as
    /// <see cref="EmbedTokens"/>, so a head slice without the embedding reads that name.
    /// </summary>
    public static IEnumerable<LlamaTensorSpec> ForSlice(LlamaConfig config, LlamaSliceSpec slice)
    {
        slice.Validate(config);
        long[] table = [config.VocabSize, config.HiddenSize];
        // A vocabulary-parallel shard reads its rows of either table; with tied embeddings the head's rows are the
        // embedding's (the same stored tensor, the same part).
        LlamaTensorSpec Table(string name) => new(name, table, SliceOf(name, table, slice.TensorParallel));
        if (slice.HasEmbedding)
            yield return Table(EmbedTokens);
        foreach (var layer in slice.Layers)
            foreach (var t in Layer(config, layer, slice.TensorParallel))
                yield return t;
        if (slice.HasHead)
        {
            yield return new(FinalNorm, [config.HiddenSize]);
            if (!config.TieWordEmbeddings)
                yield return Table(LmHead);
            else if (!slice.HasEmbedding)
                yield return Table(EmbedTokens);
        }
    }
}
