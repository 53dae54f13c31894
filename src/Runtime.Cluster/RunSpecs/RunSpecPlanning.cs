using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// The memory planner's request for a run spec: the layout, batch and adapters the spec trains with, so that
/// `rt plan --spec` sizes exactly what `rt finetune` would run, and the driver splits pipeline stages where the plan
/// says. One mapping, used by both, so they cannot disagree.
/// </summary>
public static class RunSpecPlanning
{
    /// <summary>
    /// The spec as a <see cref="PlanRequest"/> for <paramref name="model"/> on <paramref name="gpu"/>: method, LoRA rank,
    /// targets and dropout, precision, micro-batch size, max-seq-length (packed rows are full; unpacked, the longest row),
    /// packing, recompute, grad-accum as the micro-batches of a step, and the spec's data x pipeline x tensor layout with
    /// its vocabulary split.
    /// </summary>
    public static PlanRequest Request(RunSpec spec, LlamaConfig model, GpuSpec gpu, string? modelName = null)
    {
        var p = spec.Parallel;
        return new PlanRequest
        {
            Model = model,
            ModelName = modelName ?? spec.Model,
            Method = spec.Method,
            // Full fine-tuning has no adapters; the planner ignores LoRA settings then but still wants valid ones.
            Lora = new LoraSettings(spec.Lora.R, spec.Lora.Targets.Count > 0 ? spec.Lora.Targets : LinearModule.AllNames, spec.Lora.Dropout),
            // NF4 bases dequantize to bf16: the planner sizes QLoRA in bf16 whatever train.precision says.
            Precision = spec.Method == FineTuneMethod.Qlora ? ComputePrecision.Bf16 : spec.Train.Precision,
            MicroBatchSize = spec.Train.MicroBatchSize,
            SequenceLength = spec.Data.MaxSeqLength,
            Packing = spec.Data.Packing,
            GradientCheckpointing = spec.Train.GradCheckpointing,
            // The stage workers run grad-accum micro-batches through the pipeline schedule each step.
            MicroBatches = spec.Train.GradAccum,
            Schedule = p.Schedule,
            Gpu = gpu,
            Tp = p.Tensor, Pp = p.Pipeline, Dp = p.Data,
            VocabularyParallel = p.VocabParallel && p.Tensor > 1,
        };
    }
}
