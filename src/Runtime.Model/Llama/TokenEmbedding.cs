using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>The token embedding table [vocab, hidden]; its weight is named "weight" like nn.Embedding's.</summary>
public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    public TokenEmbedding(Parameter weight) : base(nameof(TokenEmbedding))
    {
        this.weight = weight;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public long VocabSize => weight.shape[0];

    /// <summary>Token ids [batch, seq] (int64) to embeddings [batch, seq, hidden] in the weight's dtype.</summary>
    public override Tensor forward(Tensor tokenIds)
    {
        if (tokenIds.dtype != ScalarType.Int64)
            throw new ArgumentException($"token ids must be int64; got {tokenIds.dtype}");
        using var scope = NewDisposeScope();
        var rows = weight.index_select(0, tokenIds.reshape(-1));
        long[] shape = [.. tokenIds.shape, weight.shape[1]];
        return rows.view(shape).MoveToOuterDisposeScope();
    }
}
