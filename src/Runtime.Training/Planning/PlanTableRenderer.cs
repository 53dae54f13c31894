using System.Globalization;
using System.Text;

namespace Runtime.Training.Planning;

/// <summary>The plan as the text `rt plan` prints: per-GPU categories in GB (10^9 bytes), the verdict, the formula.</summary>
public static class PlanTableRenderer
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Render(MemoryPlan plan)
    {
        var r = plan.Request;
        var sb = new StringBuilder();
        var peak = plan.Chosen.Peak;
        var m = peak.Memory;

        sb.AppendLine($"Memory plan: {r.ModelName}, {MethodText(r)}, {PlanNames.Precision(r.Precision)}");
        sb.AppendLine($"Batch: micro-batch {r.MicroBatchSize} x {r.SequenceLength} tokens{(r.Packing ? " (packed)" : "")}, " +
                      $"{plan.Chosen.MicroBatches} micro-batch(es) a step per replica ({PlanNames.Schedule(r.Schedule)}), " +
                      $"recompute {(r.GradientCheckpointing ? "on" : "off")}, {PlanNames.Attention(r.Attention)} attention");
        sb.AppendLine($"GPU: {r.Gpu.Name} ({r.Gpu.Product}), {Gb(plan.CapacityBytes)} GB exposed ({Gib(plan.CapacityBytes)} GiB), " +
                      $"budget {Pct(r.Headroom, 0)} = {Gb(plan.BudgetBytes)} GB");
        sb.AppendLine($"Parameters: {N(plan.Parameters)} total, {N(plan.TrainableParameters)} trainable " +
                      $"({Pct(plan.TrainableParameters / (double)plan.Parameters, 2)})");
        var how = plan.ChosenBy == LayoutChoice.Given ? "given" : "chosen: fewest pipeline stages, then smallest tp";
        var vocabulary = r.VocabularyParallel && plan.Chosen.Layout.Tp > 1 ? ", vocabulary split over tp" : "";
        sb.AppendLine($"Layout: {plan.Chosen.Layout}{vocabulary} = {plan.Gpus} GPUs on {plan.Nodes} node(s) ({how})");
        sb.AppendLine();

        sb.AppendLine($"Per GPU (most loaded: stage {peak.Stage}, layers {peak.FirstLayer}-{peak.LastLayer}){"GB",10}");
        Row(sb, "frozen weights", m.Weights, FrozenText(r));
        Row(sb, "trainable weights", m.Trainable, TrainableText(r));
        Row(sb, "gradients", m.Gradients, "fp32");
        Row(sb, "optimizer state", m.Optimizer, r.Method == FineTuneMethod.Full && r.Precision == ComputePrecision.Bf16
            ? "AdamW m, v + fp32 master weights" : "AdamW m, v (fp32)");
        Row(sb, "activations", m.Activations, r.GradientCheckpointing
            ? $"recompute on (off: {Gb(peak.ActivationsWithoutRecompute)} GB)"
            : $"recompute off (on: {Gb(peak.ActivationsWithRecompute)} GB)");
        Row(sb, "communication buffers", m.Buffers, "pipeline send/receive, gradient buckets");
        Row(sb, "fragmentation + runtime reserve", m.Reserve, "");
        sb.AppendLine("  " + new string('-', 50));
        Row(sb, "total", m.Total, $"{Pct(m.Total / (double)plan.CapacityBytes, 0)} of capacity");
        Row(sb, "capacity", plan.CapacityBytes, "");
        sb.AppendLine(plan.Fits
            ? $"  fits: yes, under the {Pct(r.Headroom, 0)} budget of {Gb(plan.BudgetBytes)} GB"
            : $"  fits: NO, {Gb(m.Total - plan.BudgetBytes)} GB over the {Pct(r.Headroom, 0)} budget of {Gb(plan.BudgetBytes)} GB");
        sb.AppendLine();

        var f = plan.ActivationFormula;
        sb.AppendLine("Activations per GPU (bytes):");
        sb.AppendLine($"  per layer per token: {f.PerLayerPerToken}");
        sb.AppendLine($"  with recompute{(f.Recompute ? " (used)" : "")}: {f.WithRecompute}");
        sb.AppendLine($"  without recompute{(f.Recompute ? "" : " (used)")}: {f.WithoutRecompute}");
        sb.AppendLine($"  {f.Symbols}");
        sb.AppendLine();

        if (plan.Chosen.Stages.Count > 1)
        {
            sb.AppendLine("Stages:");
            sb.AppendLine("  stage  layers    in flight  total GB");
            foreach (var s in plan.Chosen.Stages)
                sb.AppendLine($"  {s.Stage,5}  {$"{s.FirstLayer}-{s.LastLayer}",-8}  {s.MicroBatchesInFlight,9}  {Gb(s.Memory.Total),8}" +
                              (s.Stage == peak.Stage ? "  <- most loaded" : ""));
            sb.AppendLine();
        }

        if (plan.Minimum is { } min)
            sb.AppendLine($"Fewest GPUs that fit: {min.Layout.Gpus} ({plan.MinNodes} node(s)) as {min.Layout}, {Gb(min.PeakBytes)} GB per GPU");
        else
            sb.AppendLine($"Fewest GPUs that fit: none up to {LayoutSearch.MaxGpus} GPUs");
        if (plan.FittingLayouts.Count == 0)
            sb.AppendLine($"Layouts of {plan.Gpus} GPUs that fit: none of {plan.LayoutsConsidered} considered");
        else
        {
            sb.AppendLine($"Layouts of {plan.Gpus} GPUs that fit ({plan.FittingLayouts.Count} of {plan.LayoutsConsidered} considered, best first):");
            foreach (var l in plan.FittingLayouts)
                sb.AppendLine($"  {l.Layout,-22} {Gb(l.PeakBytes),8} GB per GPU");
        }
        sb.AppendLine();
        sb.AppendLine("Assumptions:");
        foreach (var a in plan.Assumptions) sb.AppendLine($"  - {a}");
        return sb.ToString();
    }

    static void Row(StringBuilder sb, string name, long bytes, string note) =>
        sb.AppendLine($"  {name,-38}{Gb(bytes),10}   {note}".TrimEnd());

    static string MethodText(PlanRequest r) => r.Method switch
    {
        FineTuneMethod.Full => "full fine-tuning",
        _ => $"{(r.Method == FineTuneMethod.Lora ? "LoRA" : "QLoRA")} r{r.Lora.Rank} " +
             $"({string.Join(",", r.Lora.Targets.Select(t => t.Replace("_proj", "")))}" +
             (r.Lora.Dropout > 0 ? $", dropout {r.Lora.Dropout.ToString(Inv)}" : "") + ")",
    };

    static string FrozenText(PlanRequest r) => r.Method switch
    {
        FineTuneMethod.Full => "none (all weights train)",
        FineTuneMethod.Qlora => "NF4 projections; embeddings, norms, lm_head bf16",
        _ => $"{PlanNames.Precision(r.Precision)} base model",
    };

    static string TrainableText(PlanRequest r) =>
        r.Method == FineTuneMethod.Full ? $"{PlanNames.Precision(r.Precision)} weights" : "fp32 LoRA adapters";

    static string Gb(long bytes) => (bytes / 1e9).ToString("0.0", Inv);
    static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("0.0", Inv);
    static string Pct(double fraction, int decimals) => (100 * fraction).ToString("F" + decimals, Inv) + "%";
    static string N(long v) => v.ToString("N0", Inv);
}
