using Runtime.Model.Config;
using Runtime.Model.IO;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Which tensor-parallel shard of a pipeline slice a worker holds: rank <see cref="Rank"/> of <see cref="Size"/>.
/// Megatron's split: whole attention heads (q, k, v by output rows, o by input columns), MLP columns (gate, up by
/// rows, down by columns); norms, the residual stream, the embedding and the LM head are replicated on every rank.
/// Size 1 (<see cref="None"/>) is no tensor parallelism.
/// </summary>
public readonly record struct TensorParallelShard(int Rank, int Size)
{
    /// <summary>No tensor parallelism: rank 0 of 1.</summary>
    public static TensorParallelShard None { get; } = new(0, 1);

    public bool IsSplit => Size > 1;

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
    /// intermediate_size), or the bad rank or size.
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
        if (undivided.Count > 0)
            throw new ArgumentException(
                $"tensor parallel size {Size} does not divide {string.Join(" and ", undivided)}: tensor parallelism splits whole attention heads, whole key/value heads and the MLP columns evenly");
        return this;
    }

    public override string ToString() => $"tp rank {Rank} of {Size}";
}
