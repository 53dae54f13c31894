using Runtime.Model.TensorParallel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// The token embedding table [vocab, hidden]; its weight is named "weight" like nn.Embedding's.
/// <para>
/// Vocabulary-parallel (Megatron's VocabParallelEmbedding, built with the shard's group): the weight holds rows
/// [<see cref="VocabStart"/>, <see cref="VocabStart"/> + V/t) of the full table. Each rank looks up the ids that fall
/// in its rows and writes zeros for the others, and a reduce region sums the ranks' partial embeddings into the full
/// one. Every id is owned by exactly one rank, so the sum adds only exact zeros: the result is bitwise the unsplit
/// lookup on every rank. In the backward the (replicated) output gradient reaches each rank's rows only for its own
/// ids, which is the complete gradient of those rows: nothing to all-reduce.
/// </para>
/// </summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly ITensorParallelGroup? vocabularyParallel;

    /// <summary>
    /// The whole table, or with <paramref name="vocabularyParallel"/> (size t) the rank's rows of a table of
    /// t * rows entries.
    /// </summary>
    public TokenEmbedding(Parameter weight, ITensorParallelGroup? vocabularyParallel = null) : base(nameof(TokenEmbedding))
    {
        this.weight = weight;
        // A size-1 group splits nothing: keep today's lookup, with no region.
        this.vocabularyParallel = vocabularyParallel is { Size: > 1 } ? vocabularyParallel : null;
        VocabStart = this.vocabularyParallel is { } g ? g.Rank * weight.shape[0] : 0;
        FullVocabSize = weight.shape[0] * (this.vocabularyParallel?.Size ?? 1);
        RegisterComponents();
    }

    public Parameter Weight => weight;

    /// <summary>Rows this module holds (V/t when vocabulary-parallel).</summary>
    public long VocabSize => weight.shape[0];

    /// <summary>The first vocabulary id whose row this module holds (0 unless vocabulary-parallel).</summary>
    public long VocabStart { get; }

    /// <summary>The whole model's vocabulary size.</summary>
    public long FullVocabSize { get; }

    public bool IsVocabularyParallel => vocabularyParallel is not null;

    /// <summary>Token ids [batch, seq] (int64) to embeddings [batch, seq, hidden] in the weight's dtype.</summary>
    public override Tensor forward(Tensor tokenIds)
    {
        if (tokenIds.dtype != ScalarType.Int64)
            throw new ArgumentException($"token ids must be int64; got {tokenIds.dtype}");
        using var scope = NewDisposeScope();
        long[] shape = [.. tokenIds.shape, weight.shape[1]];
        var ids = tokenIds.reshape(-1);
        if (vocabularyParallel is not { } group)
            return weight.index_select(0, ids).view(shape).MoveToOuterDisposeScope();

        // index_select refuses an id outside the table; the split lookup would silently give it zeros instead.
        if (ids.lt(0).logical_or(ids.ge(FullVocabSize)).any().ToBoolean())
            throw new ArgumentException(
                $"token ids must lie in 0 .. {FullVocabSize - 1}; got ids from {ids.min().ToInt64()} to {ids.max().ToInt64()}");
        var own = ids.ge(VocabStart).logical_and(ids.lt(VocabStart + VocabSize));
        var local = (ids - VocabStart).masked_fill(own.logical_not(), 0);
        var rows = weight.index_select(0, local).masked_fill(own.logical_not().unsqueeze(-1), 0);
        return TensorParallelRegions.ReduceFromRegion(rows.view(shape), group).MoveToOuterDisposeScope();
    }
}
