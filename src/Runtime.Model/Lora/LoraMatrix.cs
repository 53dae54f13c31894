using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Lora;

/// <summary>
/// One matrix of a LoRA adapter, shaped like PEFT's bias-free <c>nn.Linear</c> so that its parameter is named
/// "weight": a projection's <c>lora_A.weight</c> is [r, in] and its <c>lora_B.weight</c> is [out, r].
/// </summary>
public sealed class LoraMatrix : nn.Module
{
    readonly Parameter weight;

    public LoraMatrix(Parameter weight) : base(nameof(LoraMatrix))
    {
        if (weight.dim() != 2)
            throw new ArgumentException($"a LoRA matrix is 2-D; got [{string.Join(", ", weight.shape)}]");
        this.weight = weight;
        RegisterComponents();
    }

    public Parameter Weight => weight;
}
