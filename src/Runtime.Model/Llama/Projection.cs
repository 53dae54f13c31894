using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// A bias-free linear map <c>y = x W^T</c> with <c>W</c> of shape [out, in], as every Llama projection (and the LM head)
/// is. The forward is deliberately one line in one place: LoRA adapters and a 4-bit NF4 base hook in here.
/// </summary>
public sealed class Projection : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    public Projection(Parameter weight) : base(nameof(Projection))
    {
        if (weight.dim() != 2)
            throw new ArgumentException($"a projection weight is [out, in]; got [{string.Join(", ", weight.shape)}]");
        this.weight = weight;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public long InFeatures => weight.shape[1];

    public long OutFeatures => weight.shape[0];

    public override Tensor forward(Tensor input) => nn.functional.linear(input, weight);
}
