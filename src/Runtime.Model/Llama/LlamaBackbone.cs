using Runtime.Model.Config;
using Runtime.Model.TensorParallel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// The part of HF's LlamaModel a slice holds: <c>embed_tokens</c> (first stage), <c>layers</c> keyed by their GLOBAL
/// index (so layer 5 is "model.layers.5.*" on whichever worker holds it), and the final <c>norm</c> (last stage).
/// A vocabulary-parallel shard's embedding holds its vocabulary rows and joins the ranks' lookups itself, so the
/// hidden states are the whole ones either way.
/// </summary>
public sealed class LlamaBackbone : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly TokenEmbedding? embed_tokens;
    readonly ModuleDict<LlamaDecoderLayer> layers = new();
    readonly RmsNorm? norm;

    internal LlamaBackbone(LlamaConfig config, LlamaSliceSpec slice, SliceWeights weights, ITensorParallelGroup? tensorParallel)
        : base(nameof(LlamaBackbone))
    {
        if (slice.HasEmbedding)
            embed_tokens = new TokenEmbedding(weights.Take(LlamaTensorNames.EmbedTokens),
                slice.TensorParallel.IsVocabularyParallel ? tensorParallel : null);
        foreach (var i in slice.Layers)
            layers.Add(i.ToString(System.Globalization.CultureInfo.InvariantCulture), new LlamaDecoderLayer(i, config, weights, tensorParallel));
        if (slice.HasHead) norm = new RmsNorm(weights.Take(LlamaTensorNames.FinalNorm), config.RmsNormEps);
        RegisterComponents();
    }

    public TokenEmbedding? EmbedTokens => embed_tokens;

    /// <summary>The decoder layers in order of their global index.</summary>
    public IEnumerable<LlamaDecoderLayer> Layers => layers.values();

    public RmsNorm? Norm => norm;

    /// <summary>Token ids [batch, seq] (with the embedding) or hidden states [batch, seq, hidden] to hidden states.</summary>
    public override Tensor forward(Tensor input, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        var hidden = embed_tokens is null ? input : embed_tokens.call(input);
        foreach (var layer in layers.values())
            hidden = layer.call(hidden, context);
        if (norm is not null) hidden = norm.call(hidden);
        return hidden.MoveToOuterDisposeScope();
    }
}
