using Runtime.Model.Config;
using Runtime.Model.TensorParallel;

namespace Runtime.Model.Llama;

/// <summary>
/// Which part of a Llama model one worker holds: decoder layers [<see cref="FirstLayer"/>, <see cref="EndLayer"/>)
/// (global indices), plus the token embedding when it is the first pipeline stage and the final norm with the LM head
/// when it is the last. An empty layer range is allowed (e.g. a stage that holds only the head).
/// <see cref="TensorParallel"/> says which tensor-parallel shard of those layers it holds (default: all of them).
/// </summary>
public readonly record struct LlamaSliceSpec(int FirstLayer, int EndLayer, bool HasEmbedding, bool HasHead)
{
    /// <summary>The whole model: every layer, the embedding and the head.</summary>
    public static LlamaSliceSpec Whole(LlamaConfig config) => new(0, config.NumHiddenLayers, true, true);

    /// <summary>
    /// The tensor-parallel shard of the slice's layers (Megatron: heads and MLP columns split, the rest replicated).
    /// <see cref="TensorParallelShard.None"/> (rank 0 of 1) is the unsplit slice.
    /// </summary>
    public TensorParallelShard TensorParallel { get; init; } = TensorParallelShard.None;

    public int LayerCount => EndLayer - FirstLayer;

    public IEnumerable<int> Layers => Enumerable.Range(FirstLayer, LayerCount);

    public bool HoldsLayer(int layer) => layer >= FirstLayer && layer < EndLayer;

    /// <summary>Every layer, the embedding and the head, unsplit (a size-1 shard asking for a vocabulary split is unsplit).</summary>
    public bool IsWhole(LlamaConfig config) =>
        FirstLayer == 0 && EndLayer == config.NumHiddenLayers && HasEmbedding && HasHead && !TensorParallel.IsSplit;

    /// <summary>
    /// This slice as tensor-parallel shard <paramref name="rank"/> of <paramref name="size"/>; with
    /// <paramref name="vocabularyParallel"/> the embedding and the LM head are split by vocabulary rows too
    /// (<see cref="TensorParallelShard.VocabularyParallel"/>).
    /// </summary>
    public LlamaSliceSpec WithTensorParallel(int rank, int size, bool vocabularyParallel = false) =>
        this with { TensorParallel = new TensorParallelShard(rank, size) { VocabularyParallel = vocabularyParallel } };

    /// <summary>Throws naming the offending bound, or the config key the tensor-parallel size does not divide.</summary>
    public LlamaSliceSpec Validate(LlamaConfig config)
    {
        if (FirstLayer < 0 || EndLayer < FirstLayer || EndLayer > config.NumHiddenLayers)
            throw new ArgumentException(
                $"slice layers [{FirstLayer}, {EndLayer}) do not fit a model of {config.NumHiddenLayers} layers");
        if (LayerCount == 0 && !HasEmbedding && !HasHead)
            throw new ArgumentException($"slice [{FirstLayer}, {EndLayer}) holds nothing: no layers, no embedding, no head");
        TensorParallel.Validate(config);
        return this;
    }

    public override string ToString() =>
        $"layers [{FirstLayer}, {EndLayer}){(HasEmbedding ? " + embedding" : "")}{(HasHead ? " + head" : "")}{(TensorParallel.IsSplit ? $", {TensorParallel}" : "")}";
}
