using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Llama's gated MLP: <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>. Tensor-parallel: gate and up are
/// column-parallel (each rank holds intermediate / t columns; silu and the product are per column) behind one copy
/// region, down is row-parallel and a reduce region sums the ranks' partial outputs.
/// </summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    readonly Projection gate_proj;
    readonly Projection up_proj;
    readonly Projection down_proj;
    readonly ITensorParallelGroup? tensorParallel;

    /// <param name="tensorParallel">The shard's group; null without tensor parallelism (no regions, nothing extra).</param>
    public LlamaMlp(Projection gate, Projection up, Projection down, ITensorParallelGroup? tensorParallel = null) : base(nameof(LlamaMlp))
    {
        gate_proj = gate;
        up_proj = up;
        down_proj = down;
        this.tensorParallel = tensorParallel;
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
        if (tensorParallel is not null) input = TensorParallelRegions.CopyToRegion(input, tensorParallel);
        var gated = nn.functional.silu(gate_proj.forward(input, randomness)) * up_proj.forward(input, randomness);
        var output = down_proj.forward(gated, randomness);
        if (tensorParallel is not null) output = TensorParallelRegions.ReduceFromRegion(output, tensorParallel);
        return output.MoveToOuterDisposeScope();
    }
}
