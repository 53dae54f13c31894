using Runtime.Model.Config;
using Runtime.Model.IO;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Which tensor-parallel shard of a pipeline slice a worker holds: rank <see cref="Rank"/> of <see cref="Size"/>.
/// Megatron's split: whole attention heads (q, k, v by output rows, o by input columns), MLP columns (gate, up by
/// rows, down by columns); norms and the residual stream are replicated on every rank. The embedding and the LM head
/// are replicated too, unless <see cref="VocabularyParallel"/> splits them by vocabulary rows.
/// Size 1 (<see cref="None"/>) is no tensor parallelism.
/// </summary>
public readonly record struct TensorParallelShard(int Rank, int Size)
{
    /// <summary>No tensor parallelism: rank 0 of 1.</summary>
    public static TensorParallelShard None { get; } = new(0, 1);

    /// <summary>
    /// Megatron's vocab-parallel embedding, LM head and loss: rank r holds vocabulary rows [r V/t, (r+1) V/t) of
    /// embed_tokens and lm_head, and a last stage returns the logits of those rows only (the loss then needs
    /// <see cref="VocabularyParallelCrossEntropy"/>). Off by default: both tensors whole on every rank, full logits
    /// everywhere. Without a split (size 1) it changes nothing.
    /// </summary>
    public bool VocabularyParallel { get; init; }

    public bool IsSplit => Size > 1;

    /// <summary>Whether embed_tokens and lm_head are split by vocabulary rows: asked for, and there is a split.</summary>
    public bool IsVocabularyParallel => VocabularyParallel && IsSplit;

    /// <summary>This rank's contiguous part of <paramref name="full"/> items along <paramref name="dim"/>.</summary>
    public TensorSlice Part(int dim, long full)
    {
        if (full % Size != 0)
            throw new ArgumentException($"tensor parallel size {Size} does not divide {full}");
        long length = full / Size;
        return new TensorSlice(dim, Rank * length, length);
    }

    /// <summary>
    /// Throws naming the config key that the split does not divide (num_attention_heads, num_key_value_heads,
    /// intermediate_size, and vocab_size when the vocabulary is split), or the bad rank or size.
    /// </summary>
    public TensorParallelShard Validate(LlamaConfig config)
    {
        if (Size < 1) throw new ArgumentException($"tensor parallel size must be at least 1 (got {Size})");
        if (Rank < 0 || Rank >= Size)
            throw new ArgumentException($"tensor parallel rank {Rank} is outside 0 .. {Size - 1} for size {Size}");
        var undivided = new List<string>();
        if (config.NumAttentionHeads % Size != 0) undivided.Add($"num_attention_heads = {config.NumAttentionHeads}");
        if (config.NumKeyValueHeads % Size != 0) undivided.Add($"num_key_value_heads = {config.NumKeyValueHeads}");
        if (config.IntermediateSize % Size != 0) undivided.Add($"intermediate_size = {config.IntermediateSize}");
        if (IsVocabularyParallel && config.VocabSize % Size != 0) undivided.Add($"vocab_size = {config.VocabSize}");
        if (undivided.Count > 0)
            throw new ArgumentException(
                $"tensor parallel size {Size} does not divide {string.Join(" and ", undivided)}: tensor parallelism splits whole attention heads, whole key/value heads and the MLP columns evenly{(IsVocabularyParallel ? ", and a vocabulary-parallel shard splits the vocabulary rows evenly (no padding)" : "")}");
        return this;
    }

    public override string ToString() => IsVocabularyParallel ? $"tp rank {Rank} of {Size}, vocabulary split" : $"tp rank {Rank} of {Size}";
}
