using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Llama's RMSNorm exactly as transformers computes it: normalise in fp32, cast back to the input dtype, and only then
/// multiply by the weight (in bf16 that order changes the rounding, so it matters for matching HF).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double eps;

    public RmsNorm(Parameter weight, double eps) : base(nameof(RmsNorm))
    {
        this.weight = weight;
        this.eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public double Eps => eps;

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var h = input.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1], keepdim: true);
        var normalized = (h * (variance + eps).rsqrt()).to(input.dtype);
        return (weight * normalized).MoveToOuterDisposeScope();
    }
}
