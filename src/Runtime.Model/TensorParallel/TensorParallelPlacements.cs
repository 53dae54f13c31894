using Runtime.Model.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// The placement of every parameter of a (tensor-parallel) slice, by canonical name, for the training runtime: which
/// gradients to all-reduce over the tensor-parallel group, which part of the full tensor each checkpoint shard holds,
/// which copies count in the global gradient norm.
/// </summary>
public static class TensorParallelPlacements
{
    /// <summary>
    /// Every parameter of <paramref name="slice"/> (trainable or not), in <c>named_parameters()</c> order. Without
    /// tensor parallelism all are replicated with complete gradients. A vocabulary-parallel shard's embedding and LM
    /// head are sharded along dim 0 (vocabulary rows) with complete gradients.
    /// </summary>
    public static IReadOnlyDictionary<string, TensorParallelPlacement> For(LlamaSlice slice)
    {
        var projections = new Dictionary<string, Projection>(StringComparer.Ordinal);
        foreach (var layer in slice.Model.Layers)
            foreach (var projection in Projections(layer))
                projections[projection.ModulePath] = projection;

        var result = new Dictionary<string, TensorParallelPlacement>(StringComparer.Ordinal);
        foreach (var (name, parameter) in slice.named_parameters())
            result[name] = LlamaTensorNames.IsVocabularyTensor(name)
                ? OfVocabularyTable(slice, parameter)
                : Of(name, parameter, projections);
        return result;
    }

    /// <summary>
    /// The embedding or the LM head (a head slice's tied head included): its vocabulary rows on a vocabulary-parallel
    /// shard, with a complete gradient (a rank's rows see exactly its own ids and its own logits); else replicated.
    /// </summary>
    static TensorParallelPlacement OfVocabularyTable(LlamaSlice slice, Parameter parameter) =>
        slice.VocabularySlice is { } rows
            ? TensorParallelPlacement.Sharded([slice.Config.VocabSize, slice.Config.HiddenSize], rows)
            : TensorParallelPlacement.Replicated(parameter.shape);

    /// <summary>
    /// Sums, over the slice's tensor-parallel group, the gradients of the trainable parameters whose gradient is partial
    /// per rank (<see cref="TensorParallelPlacement.GradientNeedsAllReduce"/>), in place, in one all-reduce per dtype
    /// (the gradients packed into one buffer). Call it once per optimizer step, after the last micro-batch's backward
    /// and before clipping; every rank must call it. Returns how many gradients it reduced; none without tensor
    /// parallelism. A gradient that is missing on this rank is missing on every rank (same graph) and is skipped.
    /// </summary>
    public static int AllReducePartialGradients(LlamaSlice slice)
    {
        if (slice.TensorParallelGroup is not { } group) return 0;
        var placements = For(slice);
        // Each .grad is a new handle: take them inside the scope so they are released with it.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gradients = slice.named_parameters()
            .Where(p => p.parameter.requires_grad && placements[p.name].GradientNeedsAllReduce)
            .Select(p => p.parameter.grad)
            .OfType<Tensor>()
            .ToList();
        foreach (var sameType in gradients.GroupBy(g => (g.dtype, g.device.ToString())))
        {
            var bucket = sameType.ToList();
            var packed = cat(bucket.Select(g => g.reshape(-1)).ToList(), 0);
            group.AllReduceSumInPlace(packed);
            long offset = 0;
            foreach (var gradient in bucket)
            {
                long count = gradient.numel();
                gradient.copy_(packed.narrow(0, offset, count).view(gradient.shape));
                offset += count;
            }
        }
        return gradients.Count;
    }

    static IEnumerable<Projection> Projections(LlamaDecoderLayer layer) =>
    [
        layer.SelfAttention.QProj, layer.SelfAttention.KProj, layer.SelfAttention.VProj, layer.SelfAttention.OProj,
        layer.Mlp.GateProj, layer.Mlp.UpProj, layer.Mlp.DownProj,
    ];

    static TensorParallelPlacement Of(string name, Parameter parameter, Dictionary<string, Projection> projections)
    {
        foreach (var (suffix, kind) in ProjectionParameters)
        {
            if (!name.EndsWith(suffix, StringComparison.Ordinal)) continue;
            if (!projections.TryGetValue(name[..^suffix.Length], out var projection)) break;
            return kind switch
            {
                'W' => projection.WeightSlice is { } w
                    ? TensorParallelPlacement.Sharded([projection.FullOutFeatures, projection.FullInFeatures], w)
                    : TensorParallelPlacement.Replicated(parameter.shape),
                'A' => projection.LoraASlice is { } a
                    ? TensorParallelPlacement.Sharded([parameter.shape[0], projection.FullInFeatures], a)
                    : TensorParallelPlacement.Replicated(parameter.shape, projection.ParallelStyle == TensorParallelStyle.ColumnParallel),
                _ => projection.LoraBSlice is { } b
                    ? TensorParallelPlacement.Sharded([projection.FullOutFeatures, parameter.shape[1]], b)
                    : TensorParallelPlacement.Replicated(parameter.shape, projection.ParallelStyle == TensorParallelStyle.RowParallel),
            };
        }
        // Norms (and a replicated embedding and head): whole on every rank, their gradients identical on every rank.
        return TensorParallelPlacement.Replicated(parameter.shape);
    }

    static readonly (string Suffix, char Kind)[] ProjectionParameters =
        [(".lora_A.weight", 'A'), (".lora_B.weight", 'B'), (".weight", 'W')];
}
