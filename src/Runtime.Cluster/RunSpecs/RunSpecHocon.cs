using System.Globalization;
using System.Text;
using Runtime.Cluster.Configuration;
using Runtime.Training.Optim;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// The canonical text of a <see cref="RunSpec"/>: every key, in one fixed order, paths absolute, numbers in their
/// shortest round-tripping form (run.admission only when it is not the default, so that specs keep the text they had
/// before the key existed). The same spec always gives the same bytes, and
/// <see cref="RunSpecParser.ParseCanonical"/> gives the same spec back; this is what RunSubmitted stores.
/// </summary>
public static class RunSpecHocon
{
    public static string Write(RunSpec spec)
    {
        var b = new StringBuilder();
        b.Append("run {\n");
        Line(b, "name", Q(spec.Name));
        Line(b, "model", Q(spec.Model));
        Line(b, "method", Method(spec.Method));
        var l = spec.Lora;
        Line(b, "lora", $"{{ r = {l.R}, alpha = {N(l.Alpha)}, dropout = {N(l.Dropout)}, targets = [{string.Join(", ", l.Targets.Select(Q))}] }}");
        Line(b, "qlora", $"{{ quant-type = {spec.Qlora.QuantType}, double-quant = {OnOff(spec.Qlora.DoubleQuant)} }}");
        var d = spec.Data;
        Line(b, "data", $"{{ path = {Q(d.Path)}, max-seq-length = {d.MaxSeqLength}, packing = {OnOff(d.Packing)} }}");
        var t = spec.Train;
        Line(b, "train", "{ " + string.Join(", ",
            $"micro-batch-size = {t.MicroBatchSize}",
            $"grad-accum = {t.GradAccum}",
            $"epochs = {t.Epochs}",
            $"max-steps = {t.MaxSteps.ToString(CultureInfo.InvariantCulture)}",
            $"lr = {N(t.Lr)}",
            $"schedule = {Schedule(t.Schedule)}",
            $"warmup-ratio = {N(t.WarmupRatio)}",
            $"weight-decay = {N(t.WeightDecay)}",
            $"max-grad-norm = {N(t.MaxGradNorm)}",
            $"precision = {PlanNames.Precision(t.Precision)}",
            $"grad-checkpointing = {OnOff(t.GradCheckpointing)}",
            $"seed = {t.Seed.ToString(CultureInfo.InvariantCulture)}") + " }");
        var p = spec.Parallel;
        Line(b, "parallel", $"{{ data = {p.Data}, pipeline = {p.Pipeline}, tensor = {p.Tensor}, schedule = {PlanNames.Schedule(p.Schedule)}, vocab-parallel = {OnOff(p.VocabParallel)} }}");
        Line(b, "checkpoint", $"{{ every-steps = {spec.Checkpoint.EverySteps}, keep = {spec.Checkpoint.Keep} }}");
        Line(b, "log", $"{{ every-steps = {spec.Log.EverySteps}, tensorboard = {OnOff(spec.Log.Tensorboard)} }}");
        // Only when forced: the text of every other spec (what journals hold, what checkpoints' training hash is of)
        // stays what it was before the key existed.
        if (spec.Admission.Force) Line(b, "admission", $"{{ force = {OnOff(spec.Admission.Force)} }}");
        Line(b, "output", Q(spec.Output));
        b.Append("}\n");
        return b.ToString();
    }

    public static string Method(FineTuneMethod method) => PlanNames.Method(method);

    public static string Schedule(LrScheduleKind kind) => kind switch
    {
        LrScheduleKind.Cosine => "cosine",
        LrScheduleKind.Linear => "linear",
        _ => "constant",
    };

    static void Line(StringBuilder b, string key, string value) => b.Append("  ").Append(key).Append(key is "lora" or "qlora" or "data" or "train" or "parallel" or "checkpoint" or "log" or "admission" ? " " : " = ").Append(value).Append('\n');

    static string Q(string s) => HoconText.Quote(s);

    static string OnOff(bool b) => b ? "on" : "off";

    /// <summary>Shortest text that parses back to the same double ("R" is exact for doubles on .NET Core 3.0+).</summary>
    static string N(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
