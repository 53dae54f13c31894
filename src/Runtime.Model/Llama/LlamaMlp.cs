using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>Llama's gated MLP: <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>.</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    readonly Projection gate_proj;
    readonly Projection up_proj;
    readonly Projection down_proj;

    public LlamaMlp(Projection gate, Projection up, Projection down) : base(nameof(LlamaMlp))
    {
        gate_proj = gate;
        up_proj = up;
        down_proj = down;
        RegisterComponents();
    }

    public Projection GateProj => gate_proj;
    public Projection UpProj => up_proj;
    public Projection DownProj => down_proj;

    public override Tensor forward(Tensor input) => forward(input, null);

    /// <summary>The forward with the micro-batch's randomness for LoRA dropout (null outside training).</summary>
    public Tensor forward(Tensor input, StepRandomness? randomness)
    {
        using var scope = NewDisposeScope();
        var gated = nn.functional.silu(gate_proj.forward(input, randomness)) * up_proj.forward(input, randomness);
        return down_proj.forward(gated, randomness).MoveToOuterDisposeScope();
    }
}
