using Akka.Configuration;
using Runtime.Cluster.Configuration;
using Runtime.Training.Optim;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// Turns a HOCON run spec (a file's <c>run { ... }</c> block, then <c>--set key=value</c> overrides) into a
/// <see cref="RunSpec"/>: defaults from the embedded run-defaults.conf, unknown keys and bad values refused naming the
/// full key, relative paths resolved (against the spec file's folder; against the working directory for paths
/// given with --set). What it does not check (files, model shapes, slots) is <see cref="RunSpecValidator"/>'s job.
/// Syntax errors throw <see cref="HoconException"/> (file and line); everything else <see cref="RunSpecException"/>.
/// </summary>
public static class RunSpecParser
{
    static readonly IReadOnlyDictionary<string, FineTuneMethod> Methods =
        new Dictionary<string, FineTuneMethod> { ["lora"] = FineTuneMethod.Lora, ["qlora"] = FineTuneMethod.Qlora, ["full"] = FineTuneMethod.Full };

    static readonly IReadOnlyDictionary<string, ComputePrecision> Precisions =
        new Dictionary<string, ComputePrecision> { ["bf16"] = ComputePrecision.Bf16, ["fp32"] = ComputePrecision.Fp32 };

    static readonly IReadOnlyDictionary<string, LrScheduleKind> LrSchedules =
        new Dictionary<string, LrScheduleKind> { ["cosine"] = LrScheduleKind.Cosine, ["linear"] = LrScheduleKind.Linear, ["constant"] = LrScheduleKind.Constant };

    static readonly IReadOnlyDictionary<string, PipelineSchedule> PipelineSchedules =
        new Dictionary<string, PipelineSchedule> { ["1f1b"] = PipelineSchedule.OneFOneB, ["gpipe"] = PipelineSchedule.GPipe };

    static readonly IReadOnlyDictionary<string, string> QuantTypes = new Dictionary<string, string> { ["nf4"] = "nf4" };

    /// <summary>Reads a spec file; its name (without .conf) is the run's name unless the spec sets one.</summary>
    public static RunSpec Load(string path, IEnumerable<string>? sets = null, Func<string, string?>? environment = null)
    {
        var file = HoconLoader.LoadFile(path, environment);
        var full = Path.GetFullPath(path);
        return Build(full, [file], ParseSets(sets), Path.GetDirectoryName(full)!, Path.GetFileNameWithoutExtension(full));
    }

    /// <summary>Reads spec text; <paramref name="baseDirectory"/> anchors its relative paths.</summary>
    public static RunSpec Parse(string text, string source, string baseDirectory, IEnumerable<string>? sets = null, string? defaultName = null)
    {
        var config = HoconLoader.Parse(text, source, baseDirectory, _ => null);
        return Build(source, [config], ParseSets(sets), Path.GetFullPath(baseDirectory), defaultName);
    }

    /// <summary>Reads a spec written by <see cref="RunSpecHocon.Write"/> (absolute paths, every key present).</summary>
    public static RunSpec ParseCanonical(string text, string source = "journal") => Parse(text, source, Path.GetPathRoot(Environment.CurrentDirectory)!);

    /// <summary>Each <c>key=value</c> as a one-key config <c>run.key = value</c>; the value is HOCON (a number, a list, a
    /// string), taken as a plain string when it does not parse as HOCON (a path with a colon, say).</summary>
    public static IReadOnlyList<Config> ParseSets(IEnumerable<string>? sets)
    {
        var configs = new List<Config>();
        foreach (var set in sets ?? [])
        {
            int eq = set.IndexOf('=');
            var key = eq < 0 ? "" : set[..eq].Trim();
            var value = eq < 0 ? "" : set[(eq + 1)..].Trim();
            if (key.Length == 0 || value.Length == 0 || key.StartsWith("run.", StringComparison.Ordinal) ||
                !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
                throw new RunSpecException("--set", [new SpecProblem("--set", $"--set '{set}': expected key=value with a key relative to run, such as train.lr=1e-4")]);
            Config config;
            try
            {
                config = HoconLoader.Parse($"run.{key} = {value}", $"--set {set}", environment: _ => null);
            }
            catch (HoconException)
            {
                config = HoconLoader.Parse($"run.{key} = {HoconText.Quote(value)}", $"--set {set}", environment: _ => null);
            }
            configs.Add(config);
        }
        return configs;
    }

    static RunSpec Build(string source, IReadOnlyList<Config> files, IReadOnlyList<Config> sets, string specDirectory, string? defaultName)
    {
        var problems = new List<SpecProblem>();
        foreach (var layer in files.Concat(sets))
            foreach (var p in SpecReader.UnknownKeys(layer.Root, RuntimeConfig.RunDefaults.Root, ""))
                if (!problems.Any(q => q.Key == p.Key))
                    problems.Add(p);

        var user = files.Aggregate(Config.Empty, (acc, f) => f.WithFallback(acc));
        var setLayer = sets.Aggregate(Config.Empty, (acc, s) => s.WithFallback(acc));
        var merged = setLayer.WithFallback(user).WithFallback(RuntimeConfig.RunDefaults);
        var r = new SpecReader(merged);

        string PathOf(string key, string? text) => Path.GetFullPath(text!, setLayer.HasPath(key) ? Environment.CurrentDirectory : specDirectory);

        var name = r.Text("run.name") ?? defaultName;
        if (name is null) r.Add("run.name", "run.name is required (the spec has no file name to take it from)");
        else if (!RunIds.IsValid(name)) r.Add("run.name", $"run.name \"{name}\" {RunIds.Rule}");

        var model = r.RequiredText("run.model", "a Hugging Face model folder, or a 4-bit folder from rt quantize");
        var method = r.Choice("run.method", Methods);
        var targets = r.List("run.lora.targets", "[q_proj, v_proj]");
        var lora = new LoraSpec(
            r.Int("run.lora.r", min: 1),
            r.Double("run.lora.alpha", v => v > 0 ? null : "> 0"),
            r.Double("run.lora.dropout", v => v is >= 0 and < 1 ? null : "in [0, 1)"),
            CheckTargets(r, targets, method));
        var qlora = new QloraSpec(r.Choice("run.qlora.quant-type", QuantTypes), r.Bool("run.qlora.double-quant"));
        var dataPath = r.RequiredText("run.data.path", "a JSONL file of training rows");
        var data = new DataSpec(
            dataPath is null ? "" : PathOf("run.data.path", dataPath),
            r.Int("run.data.max-seq-length", min: 2),
            r.Bool("run.data.packing"));
        var maxSteps = r.Long("run.train.max-steps", min: -1);
        if (maxSteps == 0) r.Add("run.train.max-steps", "run.train.max-steps must be -1 (train all epochs) or a positive number of steps (got 0)");
        var train = new TrainSpec(
            r.Int("run.train.micro-batch-size", min: 1),
            r.Int("run.train.grad-accum", min: 1),
            r.Int("run.train.epochs", min: 1),
            maxSteps,
            r.Double("run.train.lr", v => v > 0 ? null : "> 0"),
            r.Choice("run.train.schedule", LrSchedules),
            r.Double("run.train.warmup-ratio", v => v is >= 0 and <= 1 ? null : "in [0, 1]"),
            r.Double("run.train.weight-decay", v => v >= 0 ? null : ">= 0"),
            r.Double("run.train.max-grad-norm", v => v >= 0 ? null : ">= 0 (0 turns clipping off)"),
            r.Choice("run.train.precision", Precisions),
            r.Bool("run.train.grad-checkpointing"),
            r.Long("run.train.seed", min: 0));
        var parallel = new ParallelSpec(
            r.Int("run.parallel.data", min: 1),
            r.Int("run.parallel.pipeline", min: 1),
            r.Int("run.parallel.tensor", min: 1),
            r.Choice("run.parallel.schedule", PipelineSchedules),
            r.Bool("run.parallel.vocab-parallel"));
        var checkpoint = new CheckpointSpec(r.Int("run.checkpoint.every-steps", min: 1), r.Int("run.checkpoint.keep", min: 1));
        var log = new LogSpec(r.Int("run.log.every-steps", min: 1), r.Bool("run.log.tensorboard"));
        var admission = new AdmissionSpec(r.Bool("run.admission.force"));
        var output = r.Text("run.output");
        if (output is not null && output.Trim().Length == 0) r.Add("run.output", "run.output must not be empty");

        // A key already reported as unknown or misplaced (`lora = 5`) would otherwise also be reported through each
        // of its children; say it once.
        var structural = problems.Select(p => p.Key).ToList();
        problems.AddRange(r.Problems.Where(p => !structural.Any(k => p.Key == k || p.Key.StartsWith(k + ".", StringComparison.Ordinal))));
        if (problems.Count > 0) throw new RunSpecException(source, problems);

        return new RunSpec(
            name!,
            PathOf("run.model", model),
            method,
            lora,
            qlora,
            data,
            train,
            parallel,
            checkpoint,
            log,
            output is null ? Path.Combine(specDirectory, "runs", name!) : PathOf("run.output", output)) { Admission = admission };
    }

    static IReadOnlyList<string> CheckTargets(SpecReader r, IReadOnlyList<string>? targets, FineTuneMethod method)
    {
        if (targets is null) return [];
        foreach (var t in targets)
            if (!LinearModule.AllNames.Contains(t))
                r.Add("run.lora.targets", $"run.lora.targets: \"{t}\" is not a Llama projection (use {string.Join(", ", LinearModule.AllNames)})");
        foreach (var twice in targets.GroupBy(t => t).Where(g => g.Count() > 1))
            r.Add("run.lora.targets", $"run.lora.targets lists {twice.Key} twice");
        if (targets.Count == 0 && method != FineTuneMethod.Full)
            r.Add("run.lora.targets", "run.lora.targets is empty (LoRA needs at least one projection, such as [q_proj, v_proj])");
        return targets;
    }
}
