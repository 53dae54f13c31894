using Runtime.Model.Config;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// One pre-norm decoder layer (HF's LlamaDecoderLayer):
/// <c>h = x + self_attn(input_layernorm(x))</c>; <c>out = h + mlp(post_attention_layernorm(h))</c>.
/// </summary>
public sealed class LlamaDecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly RmsNorm input_layernorm;
    readonly LlamaAttention self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly LlamaMlp mlp;

    internal LlamaDecoderLayer(int layerIndex, LlamaConfig config, SliceWeights weights, ITensorParallelGroup? tensorParallel)
        : base(nameof(LlamaDecoderLayer))
    {
        LayerIndex = layerIndex;
        var p = LlamaTensorNames.LayerPrefix(layerIndex);
        Projection Proj(string name) => weights.TakeProjection(p + name);
        input_layernorm = new RmsNorm(weights.Take(p + "input_layernorm.weight"), config.RmsNormEps);
        self_attn = new LlamaAttention(layerIndex, LlamaLayerShape.For(config, weights.Shard),
            Proj("self_attn.q_proj.weight"), Proj("self_attn.k_proj.weight"),
            Proj("self_attn.v_proj.weight"), Proj("self_attn.o_proj.weight"), tensorParallel);
        post_attention_layernorm = new RmsNorm(weights.Take(p + "post_attention_layernorm.weight"), config.RmsNormEps);
        mlp = new LlamaMlp(Proj("mlp.gate_proj.weight"), Proj("mlp.up_proj.weight"), Proj("mlp.down_proj.weight"), tensorParallel);
        RegisterComponents();
    }

    /// <summary>The global index of this layer in the whole model.</summary>
    public int LayerIndex { get; }

    public RmsNorm InputLayerNorm => input_layernorm;
    public LlamaAttention SelfAttention => self_attn;
    public RmsNorm PostAttentionLayerNorm => post_attention_layernorm;
    public LlamaMlp Mlp => mlp;

    public override Tensor forward(Tensor hidden, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        var h = hidden + self_attn.call(input_layernorm.call(hidden), context);
        var output = h + mlp.forward(post_attention_layernorm.call(h), context.Randomness);
        return output.MoveToOuterDisposeScope();
    }
}
