using System.Globalization;
using Runtime.Cluster.Hosting;
using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// Admission by memory plan: a run whose most loaded worker (<see cref="RunMemoryPlan.For"/>: the planner's bytes by
/// category, with its headroom rule) does not fit the smallest slot it could be given is refused before anything
/// starts, with the plan and the keys to change. The slot-aware allocation does not look at memory, so any worker may
/// land in any slot: the smallest slot of the cluster's worker nodes is the one to fit. Slots of each kind are checked
/// (a GPU slot keeps 1 GiB aside for CUDA, a CPU slot does not); nodes that do not say their slots' memory are not.
/// run.admission.force = on skips the check.
/// </summary>
public static class MemoryAdmission
{
    public const string ForceKey = "run.admission.force";

    /// <summary>The refusal, or null when the plan fits every slot (or is forced, or no slot says its memory).</summary>
    public static SpecProblem? Check(RunSpec spec, LlamaConfig config, IReadOnlyList<SlotOffer> offers)
    {
        if (spec.Admission.Force) return null;
        var sized = offers.Where(o => o.Slots is { Count: > 0, MemoryBytes: > 0 })
            .GroupBy(o => (o.Slots.Kind, o.Slots.MemoryBytes))
            .OrderBy(g => g.Key.MemoryBytes)
            .Select(g => g.First());
        foreach (var offer in sized)
        {
            LayoutPlan plan;
            try
            {
                plan = RunMemoryPlan.For(spec, config, offer.Slots.Kind, offer.Slots.MemoryBytes);
            }
            catch (PlanningException e)
            {
                return new SpecProblem("run", $"run: the memory plan cannot be made: {e.Message}");
            }
            if (!plan.Fits) return Refusal(spec, config, plan, offer);
        }
        return null;
    }

    static SpecProblem Refusal(RunSpec spec, LlamaConfig config, LayoutPlan plan, SlotOffer offer)
    {
        var peak = plan.Peak;
        var m = peak.Memory;
        var hints = Hints(spec, config, peak);
        var key = hints[0].Key;
        var worker = plan.Stages.Count == 1
            ? "each worker"
            : $"a worker of stage {peak.Stage} (of {plan.Stages.Count}: layers {peak.FirstLayer}-{peak.LastLayer})";
        double budgetPercent = 100.0 * plan.BudgetBytes / offer.Slots.MemoryBytes;
        var message = string.Create(CultureInfo.InvariantCulture,
            $"{key}: the run's memory plan does not fit a worker slot: {worker} needs {ByteText.Format(m.Total)} " +
            $"(weights {ByteText.Format(m.Weights)}, trainable {ByteText.Format(m.Trainable)}, gradients {ByteText.Format(m.Gradients)}, " +
            $"optimizer {ByteText.Format(m.Optimizer)}, activations {ByteText.Format(m.Activations)}, buffers {ByteText.Format(m.Buffers)}, " +
            $"reserve {ByteText.Format(m.Reserve)}), over the budget of {ByteText.Format(plan.BudgetBytes)} " +
            $"({budgetPercent:0}% of the smallest slot: {ByteText.Format(offer.Slots.MemoryBytes)}, a {(offer.Slots.Kind == SlotKind.Gpu ? "GPU" : "CPU")} slot of {offer.Node}); " +
            $"to fit, {string.Join("; ", hints.Select(h => h.Hint))}; or set {ForceKey} = on (rt finetune --force) to start it anyway");
        return new SpecProblem(key, message);
    }

    /// <summary>What would shrink the plan, the most effective first: the largest of activations and the parameter-sized state decides.</summary>
    static List<(string Key, string Hint)> Hints(RunSpec spec, LlamaConfig config, StagePlan peak)
    {
        var m = peak.Memory;
        var activations = new List<(string, string)>();
        if (!spec.Train.GradCheckpointing)
            activations.Add(("run.train.grad-checkpointing",
                $"run.train.grad-checkpointing = on (activations {ByteText.Format(peak.ActivationsWithoutRecompute)} -> {ByteText.Format(peak.ActivationsWithRecompute)})"));
        if (spec.Train.MicroBatchSize > 1)
            activations.Add(("run.train.micro-batch-size",
                $"a smaller run.train.micro-batch-size (now {spec.Train.MicroBatchSize}; raise run.train.grad-accum to keep the batch)"));
        activations.Add(("run.data.max-seq-length", $"a shorter run.data.max-seq-length (now {spec.Data.MaxSeqLength})"));

        var state = new List<(string, string)>();
        if (spec.Parallel.Pipeline < config.NumHiddenLayers)
            state.Add(("run.parallel.pipeline", $"more pipeline stages, run.parallel.pipeline (now {spec.Parallel.Pipeline}), to split the layers"));
        state.Add(("run.parallel.tensor", $"more tensor-parallel ranks, run.parallel.tensor (now {spec.Parallel.Tensor}), to split each layer"));
        if (spec.Method != FineTuneMethod.Qlora)
            state.Add(("run.method", $"run.method = {(spec.Method == FineTuneMethod.Full ? "lora or qlora" : "qlora")} (now {PlanNames.Method(spec.Method)})"));

        long parameterSized = m.Weights + m.Trainable + m.Gradients + m.Optimizer;
        return m.Activations >= parameterSized ? [.. activations, .. state] : [.. state, .. activations];
    }
}
