using Runtime.Cluster.Hosting;
using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// A run spec's memory plan: the planner's request for the spec's layout and batch, sized per worker over the stage
/// split the workers run. One place, so that the split, the admission at submission and the planned figures a run
/// reports beside its measured ones are the same arithmetic.
/// </summary>
public static class RunMemoryPlan
{
    /// <summary>
    /// Headroom and reserve on a CPU slot: the planner's 90% budget and 5% for allocator fragmentation, but no CUDA
    /// context, cuBLAS workspace or NCCL buffers (the planner's 1 GiB on a GPU).
    /// </summary>
    public static ReservePolicy CpuReserve { get; } = ReservePolicy.Default with { RuntimeBytes = 0 };

    /// <summary>
    /// The planner's request for the spec. Runtime's own engine (<see cref="ActivationEngine.RuntimeCpu"/>: its workers
    /// run TorchSharp, whose autograd keeps what that model counts) with fused attention (scaled_dot_product_attention,
    /// what the workers use). QLoRA is sized in bf16 (its NF4 bases dequantize to bf16), whatever run.train.precision says.
    /// </summary>
    public static PlanRequest Request(RunSpec spec, LlamaConfig config, GpuSpec slot, ReservePolicy reserve, ActivationEngine engine) =>
        RunSpecPlanning.Request(spec, config, slot, Path.GetFileName(spec.Model.TrimEnd('/', '\\'))) with
        {
            Attention = AttentionKernel.Fused,
            Engine = engine,
            Reserve = reserve,
        };

    /// <summary>
    /// The layers of each pipeline stage: <see cref="PipelineSplit"/> with the planner's cost of each stage, as `rt plan`
    /// splits them (its default engine and any catalogue GPU: the cost does not depend on the GPU, only the budget does).
    /// </summary>
    public static int[] LayerCounts(RunSpec spec, LlamaConfig config)
    {
        var p = spec.Parallel;
        if (p.Pipeline == 1) return [config.NumHiddenLayers];
        var request = Request(spec, config, GpuCatalog.Get("h100-80"), ReservePolicy.Default, ActivationEngine.PyTorch);
        return MemoryPlanner.PlanLayout(request, Layout(spec)).Stages.Select(s => s.Layers).ToArray();
    }

    /// <summary>Every stage's worker sized for a slot of <paramref name="kind"/> with <paramref name="slotBytes"/>, over the split the workers run.</summary>
    public static LayoutPlan For(RunSpec spec, LlamaConfig config, SlotKind kind, long slotBytes)
    {
        var slot = new GpuSpec(kind == SlotKind.Gpu ? "gpu-slot" : "cpu-slot", kind == SlotKind.Gpu ? "GPU slot" : "CPU slot", slotBytes,
            // Only the planner's layout search reads the node size; a given layout may span nodes (the allocation decides).
            GpusPerNode: Math.Max(8, spec.Parallel.Tensor), Source: "the node's runtime.node.slot-memory");
        var request = Request(spec, config, slot, kind == SlotKind.Gpu ? ReservePolicy.Default : CpuReserve, ActivationEngine.RuntimeCpu);
        return MemoryPlanner.PlanLayout(request, Layout(spec), LayerCounts(spec, config));
    }

    static ParallelLayout Layout(RunSpec spec) => new(spec.Parallel.Tensor, spec.Parallel.Pipeline, spec.Parallel.Data);
}
