using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Grouped-query self-attention of one layer (HF's LlamaAttention): q/k/v projections to [batch, heads, seq, head_dim],
/// rotary on q and k, optional KV cache, key/value heads repeated to the query heads (repeat_interleave: query head h
/// uses kv head h / groups), scaled scores with the mask, and o_proj.
/// <para>
/// Tensor-parallel (a group and a shard's <see cref="LlamaLayerShape"/>): q, k and v
/// are column-parallel over whole heads behind one copy region, so each rank attends with its own query heads and the
/// key/value heads they use (kv head h / groups of the full model is local kv head (h mod heads/t) / groups, since t
/// divides the kv heads); o_proj is row-parallel and a reduce region sums the ranks' partial outputs.
/// </para>
/// </summary>
public sealed class LlamaAttention : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly Projection q_proj;
    readonly Projection k_proj;
    readonly Projection v_proj;
    readonly Projection o_proj;
    readonly LlamaLayerShape shape;
    readonly double scaling;
    readonly ITensorParallelGroup? tensorParallel;

    /// <param name="shape">What this module computes: the whole layer's heads, or one tensor-parallel shard's.</param>
    /// <param name="tensorParallel">The shard's group; null without tensor parallelism (no regions, nothing extra).</param>
    public LlamaAttention(int layerIndex, LlamaLayerShape shape, Projection q, Projection k, Projection v, Projection o,
        ITensorParallelGroup? tensorParallel = null)
        : base(nameof(LlamaAttention))
    {
        LayerIndex = layerIndex;
        this.shape = shape;
        this.tensorParallel = tensorParallel;
        scaling = Math.Pow(shape.HeadDim, -0.5);
        q_proj = q;
        k_proj = k;
        v_proj = v;
        o_proj = o;
        RegisterComponents();
    }

    public int LayerIndex { get; }

    public Projection QProj => q_proj;
    public Projection KProj => k_proj;
    public Projection VProj => v_proj;
    public Projection OProj => o_proj;

    /// <summary>The heads and widths this module computes (a tensor-parallel shard's share of the layer's).</summary>
    public LlamaLayerShape Shape => shape;

    public override Tensor forward(Tensor hidden, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        long batch = hidden.shape[0], length = hidden.shape[1];
        // The projections get the micro-batch's randomness for LoRA dropout (null outside training).
        var randomness = context.Randomness;
        if (tensorParallel is not null) hidden = TensorParallelRegions.CopyToRegion(hidden, tensorParallel);
        var q = q_proj.forward(hidden, randomness).view(batch, length, shape.Heads, shape.HeadDim).transpose(1, 2);
        var k = k_proj.forward(hidden, randomness).view(batch, length, shape.KeyValueHeads, shape.HeadDim).transpose(1, 2);
        var v = v_proj.forward(hidden, randomness).view(batch, length, shape.KeyValueHeads, shape.HeadDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, context.Cos, context.Sin);
        k = RotaryEmbedding.Apply(k, context.Cos, context.Sin);

        if (context.Cache is { } cache)
        {
            long cached = cache.LengthOf(LayerIndex);
            if (cached != context.PastLength)
                throw new InvalidOperationException(
                    $"layer {LayerIndex}: the KV cache holds {cached} tokens but the context was built for {context.PastLength}");
            (k, v) = cache.Append(LayerIndex, k, v);
        }
        k = RepeatKeyValueHeads(k);
        v = RepeatKeyValueHeads(v);

        var attended = context.Implementation == AttentionImplementation.Eager
            ? EagerAttention(q, k, v, context.Mask)
            : nn.functional.scaled_dot_product_attention(q, k, v, context.Mask, 0.0, context.IsCausal);
        var merged = attended.transpose(1, 2).reshape(batch, length, shape.QueryWidth);
        var output = o_proj.forward(merged, randomness);
        if (tensorParallel is not null) output = TensorParallelRegions.ReduceFromRegion(output, tensorParallel);
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>HF's eager_attention_forward: scores in the activation dtype, softmax in fp32, cast back.</summary>
    Tensor EagerAttention(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        var scores = matmul(q, k.transpose(2, 3)) * scaling;
        if (mask is not null) scores = scores + mask;
        var weights = scores.softmax(-1, ScalarType.Float32).to(q.dtype);
        return matmul(weights, v);
    }

    /// <summary>[b, kv_heads, s, d] to [b, heads, s, d], each kv head repeated groups times consecutively.</summary>
    Tensor RepeatKeyValueHeads(Tensor x)
    {
        int groups = shape.KeyValueGroups;
        if (groups == 1) return x;
        long b = x.shape[0], s = x.shape[2], d = x.shape[3];
        return x.unsqueeze(2).expand(b, shape.KeyValueHeads, groups, s, d).reshape(b, shape.Heads, s, d);
    }
}
