using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// A Llama causal LM, whole or a pipeline slice of it, shaped like HF's LlamaForCausalLM so that
/// <c>named_parameters()</c> and <c>state_dict()</c> give the canonical names ("model.layers.5.self_attn.q_proj.weight",
/// "lm_head.weight"). Fields: <c>model</c> (<see cref="LlamaBackbone"/>) and <c>lm_head</c> (only with the head).
/// <para>
/// Tied embeddings (config.tie_word_embeddings): a slice holding both the embedding and the head uses ONE parameter for
/// both, so named_parameters() lists it once, as "model.embed_tokens.weight" (state_dict lists both names, as HF's).
/// A head slice without the embedding loads the stored "model.embed_tokens.weight" as its "lm_head.weight": the two
/// copies then live on different workers, and training them fully needs their gradients summed across the two stages
/// (Megatron's embedding group); LoRA leaves both frozen.
/// </para>
/// Input: token ids [batch, seq] (int64) with the embedding, else hidden states [batch, seq, hidden]. Output: logits
/// [batch, seq, vocab] in fp32 with the head, else hidden states [batch, seq, hidden] in the model dtype.
/// <para>
/// Tensor parallelism (<see cref="LlamaSliceSpec.TensorParallel"/> of size t &gt; 1): the slice is one rank's shard
/// and runs in lockstep with the other ranks through its <see cref="ITensorParallelGroup"/> (Megatron regions inside
/// each layer). Inputs, outputs, the residual stream, norms, the embedding and the LM head are replicated: every rank
/// takes the same input and returns bitwise the same output (full logits). Parameters keep their canonical names with
/// the shard's part as their value; <see cref="TensorParallelPlacements"/> says which part.
/// </para>
/// <para>
/// Vocabulary-parallel (<see cref="TensorParallelShard.VocabularyParallel"/>): the embedding and the LM head hold the
/// rank's vocabulary rows [r V/t, (r+1) V/t) (tied: the head is the embedding's shard). The embedding's output is still
/// the whole one, but a last stage returns LOCAL logits [batch, seq, V/t] for those rows
/// (<see cref="VocabularySlice"/>): compute the loss with <see cref="CausalLmLoss"/>'s overloads that take
/// <see cref="VocabularyParallelGroup"/>.
/// </para>
/// </summary>
public sealed class LlamaSlice : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly LlamaBackbone model;
    readonly Projection? lm_head;
    readonly RotaryEmbedding rotary;

    LlamaSlice(LlamaConfig config, LlamaSliceSpec spec, LlamaModelOptions options, SliceWeights weights,
        ITensorParallelGroup? tensorParallel) : base(nameof(LlamaSlice))
    {
        Config = config;
        Spec = spec;
        Options = options;
        TensorParallelGroup = tensorParallel;
        model = new LlamaBackbone(config, spec, weights, tensorParallel);
        if (spec.HasHead)
        {
            var headWeight = weights.Take(config.TieWordEmbeddings ? LlamaTensorNames.EmbedTokens : LlamaTensorNames.LmHead);
            lm_head = spec.TensorParallel.IsVocabularyParallel
                ? new Projection("lm_head", headWeight, TensorParallelStyle.ColumnParallel, spec.TensorParallel)
                : new Projection("lm_head", headWeight);
        }
        VocabularyParallelGroup = spec.TensorParallel.IsVocabularyParallel ? tensorParallel : null;
        rotary = new RotaryEmbedding(config, options.Device);
        RegisterComponents();
    }

    /// <summary>
    /// Builds a slice whose every weight comes from <paramref name="weights"/>, each asked for once by its stored name
    /// (see <see cref="LlamaTensorNames.ForSlice"/>) and used as is: nothing is allocated and then overwritten.
    /// With <see cref="LlamaModelOptions.ProjectionBase"/> = NF4 the decoder layers' projections come from
    /// <paramref name="quantizedWeights"/> instead (default: each dense weight quantized as it is produced, then freed).
    /// A tensor-parallel <paramref name="spec"/> (size &gt; 1) needs its rank's member of the group,
    /// <paramref name="tensorParallel"/>; the factories are then asked for the shard's parts
    /// (<see cref="LlamaTensorSpec.Slice"/>).
    /// </summary>
    public static LlamaSlice Build(LlamaConfig config, LlamaSliceSpec spec, LlamaModelOptions options, WeightFactory weights,
        Nf4WeightFactory? quantizedWeights = null, ITensorParallelGroup? tensorParallel = null)
    {
        config.Validate();
        spec.Validate(config);
        options.Validate();
        var group = CheckGroup(spec, tensorParallel);
        var source = new SliceWeights(config, spec, options, weights, quantizedWeights);
        var slice = new LlamaSlice(config, spec, options, source, group);
        var untaken = source.Untaken.ToList();
        if (untaken.Count > 0)
        {
            slice.Dispose();
            throw new InvalidOperationException($"slice {spec} did not use tensors: {string.Join(", ", untaken)}");
        }
        return slice;
    }

    /// <summary>
    /// The group a tensor-parallel slice reduces with; null without tensor parallelism (a size-1 group is not kept:
    /// the slice then has no regions at all).
    /// </summary>
    static ITensorParallelGroup? CheckGroup(LlamaSliceSpec spec, ITensorParallelGroup? group)
    {
        var shard = spec.TensorParallel;
        if (group is null)
        {
            if (shard.IsSplit)
                throw new ArgumentException($"slice {spec} is tensor-parallel and needs the group of its {shard.Size} ranks");
            return null;
        }
        if (group.Size != shard.Size || group.Rank != shard.Rank)
            throw new ArgumentException(
                $"slice {spec} is tp rank {shard.Rank} of {shard.Size}, but the group given is rank {group.Rank} of {group.Size}");
        return shard.IsSplit ? group : null;
    }

    public LlamaConfig Config { get; }

    /// <summary>The tensor-parallel group of this shard; null without tensor parallelism.</summary>
    public ITensorParallelGroup? TensorParallelGroup { get; }

    /// <summary>
    /// The group whose ranks split the vocabulary (embedding rows, head rows, logits columns); null unless the slice is
    /// a vocabulary-parallel shard. Pass it to <see cref="CausalLmLoss"/> with this slice's logits.
    /// </summary>
    public ITensorParallelGroup? VocabularyParallelGroup { get; }

    /// <summary>
    /// The vocabulary ids whose logits (columns of the output) and embedding/head rows this slice holds: dim 0 of the
    /// [vocab, hidden] tables; null when it holds them all.
    /// </summary>
    public TensorSlice? VocabularySlice =>
        Spec.TensorParallel.IsVocabularyParallel ? Spec.TensorParallel.Part(0, Config.VocabSize) : null;

    public LlamaSliceSpec Spec { get; }

    public LlamaModelOptions Options { get; }

    public LlamaBackbone Model => model;

    public Projection? LmHead => lm_head;

    public RotaryEmbedding Rotary => rotary;

    /// <summary>
    /// The attention context of one micro-batch: positions [batch, seq] int64, optional segment ids [batch, seq] of
    /// packed rows, and the KV cache when generating (its length for this slice's first layer is the past length).
    /// Training passes the micro-batch's <paramref name="randomness"/>; without it nothing random happens.
    /// </summary>
    public AttentionContext CreateContext(Tensor positions, Tensor? segmentIds = null, KvCache? cache = null,
        StepRandomness? randomness = null)
    {
        long past = cache is null || Spec.LayerCount == 0 ? 0 : cache.LengthOf(Spec.FirstLayer);
        return new AttentionContext(rotary, positions, segmentIds, Options.DType, Options.Attention, cache, past, randomness);
    }

    public override Tensor forward(Tensor input, AttentionContext context)
    {
        CheckInput(input, context);
        using var scope = NewDisposeScope();
        var hidden = model.call(input, context);
        if (lm_head is null) return hidden.MoveToOuterDisposeScope();
        return HeadLogits(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The LM head on the final norm's output: fp32 logits [batch, seq, vocab], or the rank's columns [batch, seq, V/t]
    /// when vocabulary-parallel (then behind a copy region: each rank's head sees only its vocabulary rows, so its
    /// gradient of <paramref name="normedHidden"/> is partial and the region's backward sums them).
    /// </summary>
    public Tensor HeadLogits(Tensor normedHidden)
    {
        if (lm_head is null) throw new InvalidOperationException($"slice {Spec} holds no LM head");
        using var scope = NewDisposeScope();
        var input = VocabularyParallelGroup is { } group ? TensorParallelRegions.CopyToRegion(normedHidden, group) : normedHidden;
        return lm_head.call(input).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>The forward with a context built (and disposed) for this one call.</summary>
    public Tensor forward(Tensor input, Tensor positions, Tensor? segmentIds = null, KvCache? cache = null)
    {
        using var context = CreateContext(positions, segmentIds, cache);
        return forward(input, context);
    }

    void CheckInput(Tensor input, AttentionContext context)
    {
        bool shapeOk = Spec.HasEmbedding
            ? input.dim() == 2 && input.dtype == ScalarType.Int64
            : input.dim() == 3 && input.shape[2] == Config.HiddenSize && input.dtype == Options.DType;
        if (!shapeOk)
            throw new ArgumentException(Spec.HasEmbedding
                ? $"slice {Spec} takes token ids int64 [batch, seq]; got {input.dtype} [{string.Join(", ", input.shape)}]"
                : $"slice {Spec} takes hidden states {Options.DType} [batch, seq, {Config.HiddenSize}]; got {input.dtype} [{string.Join(", ", input.shape)}]");
        if (input.shape[0] != context.BatchSize || input.shape[1] != context.Length)
            throw new ArgumentException(
                $"input [{string.Join(", ", input.shape)}] does not match the context's positions [{context.BatchSize}, {context.Length}]");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) rotary.Dispose();
        base.Dispose(disposing);
    }
}
