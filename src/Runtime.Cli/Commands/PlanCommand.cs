using System.CommandLine;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt plan`: how many GPUs a fine-tuning run needs and whether it fits, per GPU and per category, before a
/// GPU-hour is spent. Either the run is described by flags, or `--spec` reads it from a run spec (the layout, batch and
/// adapters `rt finetune` would train with; `--set` overrides its keys as in `rt finetune`). Exit codes: 0 the plan
/// fits, 2 it does not fit (the plan is still printed), 1 bad input.
/// </summary>
public static class PlanCommand
{
    public const int ExitFits = 0;
    public const int ExitError = 1;
    public const int ExitDoesNotFit = 2;

    public static Command Create()
    {
        var model = new Option<string?>("--model")
        {
            Description = $"A preset ({string.Join(" | ", LlamaPresets.ByName.Keys)}) or a folder holding config.json; " +
                          "with --spec, the architecture to plan instead of reading run.model's config.json",
        };
        var spec = new Option<string?>("--spec")
        {
            Description = "A run spec (hocon/runs/*.conf): plan its method, adapters, batch and parallel layout (the flags those set are refused); " +
                          "the fewest GPUs is then searched over every layout of the same recipe",
        };
        var sets = new Option<string[]>("--set")
        {
            Description = "With --spec: override a spec key, relative to run: --set parallel.tensor=4 (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var method = new Option<string>("--method") { Description = "full | lora | qlora", DefaultValueFactory = _ => "lora" };
        method.AcceptOnlyFromAmong("full", "lora", "qlora");
        var loraRank = new Option<int>("--lora-rank") { Description = "LoRA rank r", DefaultValueFactory = _ => 16 };
        var loraTargets = new Option<string>("--lora-targets")
        {
            Description = "Projections with adapters: 'all' or a comma list (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; short names q,k,... too)",
            DefaultValueFactory = _ => "all",
        };
        var loraDropout = new Option<double>("--lora-dropout") { Description = "Dropout on the adapter input (adds a mask and a copy per adapter)", DefaultValueFactory = _ => 0.0 };
        var precision = new Option<string>("--precision") { Description = "bf16 | fp32: compute dtype and base weight dtype", DefaultValueFactory = _ => "bf16" };
        precision.AcceptOnlyFromAmong("bf16", "fp32");
        var tp = new Option<int?>("--tp") { Description = "Tensor-parallel ranks per stage (within a node); searched when omitted" };
        var pp = new Option<int?>("--pp") { Description = "Pipeline stages; searched when omitted" };
        var dp = new Option<int?>("--dp") { Description = "Data-parallel replicas; searched when omitted" };
        var microBatch = new Option<int>("--micro-batch-size") { Description = "Sequences per micro-batch", DefaultValueFactory = _ => 1 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence (the longest row when not packed)", DefaultValueFactory = _ => 2048 };
        var packing = new Option<bool>("--packing") { Description = "Packed rows (block-diagonal attention mask materialized)" };
        var recompute = new Option<bool>("--gradient-checkpointing")
        {
            Description = "Recompute each layer in backward (keep only layer inputs); --gradient-checkpointing false to keep everything",
            DefaultValueFactory = _ => true,
        };
        var microBatches = new Option<int?>("--micro-batches") { Description = "Micro-batches per replica per step (default: the number of pipeline stages)" };
        var schedule = new Option<string>("--schedule") { Description = "Pipeline schedule: 1f1b | gpipe", DefaultValueFactory = _ => "1f1b" };
        schedule.AcceptOnlyFromAmong("1f1b", "gpipe");
        var attention = new Option<string>("--attention") { Description = "fused (flash/memory-efficient SDPA) | eager (keeps seq x seq probabilities)", DefaultValueFactory = _ => "fused" };
        attention.AcceptOnlyFromAmong("fused", "eager");
        var gpu = new Option<string>("--gpu") { Description = $"GPU kind: {string.Join(" | ", GpuCatalog.ByName.Keys)}", DefaultValueFactory = _ => "b200" };
        gpu.AcceptOnlyFromAmong(GpuCatalog.ByName.Keys.ToArray());
        var gpus = new Option<int?>("--gpus") { Description = "GPUs to plan for (default: tp x pp x dp when all are given, else one node)" };
        var headroom = new Option<double>("--headroom") { Description = "Fraction of the GPU's exposed memory a plan may use", DefaultValueFactory = _ => 0.9 };
        var vocabParallel = new Option<bool>("--vocab-parallel")
        {
            Description = "Split the embedding, LM head and loss by vocabulary rows under tp too (a spec's run.parallel.vocab-parallel = on); " +
                          "off: both tables whole on every tp rank",
        };
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };

        var command = new Command("plan", "How many GPUs a fine-tuning run needs, per GPU and per category; exit 0 fits, 2 does not fit, 1 bad input");
        foreach (var o in new Option[] { model, spec, sets, method, loraRank, loraTargets, loraDropout, precision, tp, pp, dp, microBatch, seqLen, packing,
                                         recompute, microBatches, schedule, attention, gpu, gpus, headroom, vocabParallel, json })
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                var gpuSpec = GpuCatalog.Get(parse.GetValue(gpu)!);
                PlanRequest request;
                if (parse.GetValue(spec) is { } specPath)
                {
                    // Every flag the spec decides is refused rather than silently ignored or silently preferred.
                    foreach (var (option, key) in new (Option, string)[]
                             {
                                 (method, "method"), (loraRank, "lora.r"), (loraTargets, "lora.targets"), (loraDropout, "lora.dropout"),
                                 (precision, "train.precision"), (tp, "parallel.tensor"), (pp, "parallel.pipeline"), (dp, "parallel.data"),
                                 (microBatch, "train.micro-batch-size"), (seqLen, "data.max-seq-length"), (packing, "data.packing"),
                                 (recompute, "train.grad-checkpointing"), (microBatches, "train.grad-accum"), (schedule, "parallel.schedule"),
                                 (vocabParallel, "parallel.vocab-parallel"),
                             })
                        if (parse.GetResult(option) is { Implicit: false })
                            throw new PlanningException($"{option.Name} comes from the spec's run.{key} with --spec; change it with --set {key}=...");
                    request = SpecRequest(specPath, parse.GetValue(sets) ?? [], parse.GetValue(model), gpuSpec) with
                    {
                        Gpus = parse.GetValue(gpus),
                        Attention = PlanNames.ParseAttention(parse.GetValue(attention)!),
                        Headroom = parse.GetValue(headroom),
                    };
                }
                else
                {
                    if (parse.GetValue(sets) is { Length: > 0 }) throw new PlanningException("--set overrides keys of a run spec; give the spec with --spec");
                    var modelArg = parse.GetValue(model)
                        ?? throw new PlanningException("give the model to plan: --model PRESET|DIR, or a run spec: --spec FILE.conf");
                    request = new PlanRequest
                    {
                        Model = LoadModel(modelArg),
                        ModelName = modelArg,
                        Method = PlanNames.ParseMethod(parse.GetValue(method)!),
                        Lora = new LoraSettings(parse.GetValue(loraRank), LoraSettings.ParseTargets(parse.GetValue(loraTargets)!), parse.GetValue(loraDropout)),
                        Precision = PlanNames.ParsePrecision(parse.GetValue(precision)!),
                        MicroBatchSize = parse.GetValue(microBatch),
                        SequenceLength = parse.GetValue(seqLen),
                        Packing = parse.GetValue(packing),
                        GradientCheckpointing = parse.GetValue(recompute),
                        VocabularyParallel = parse.GetValue(vocabParallel),
                        MicroBatches = parse.GetValue(microBatches),
                        Schedule = PlanNames.ParseSchedule(parse.GetValue(schedule)!),
                        Attention = PlanNames.ParseAttention(parse.GetValue(attention)!),
                        Gpu = gpuSpec,
                        Gpus = parse.GetValue(gpus),
                        Tp = parse.GetValue(tp),
                        Pp = parse.GetValue(pp),
                        Dp = parse.GetValue(dp),
                        Headroom = parse.GetValue(headroom),
                    };
                }
                var plan = MemoryPlanner.Plan(request);
                // A spec fixes its layout, so the fewest GPUs is asked of the same recipe laid out any way (dp 1).
                if (parse.GetValue(spec) is not null)
                    plan = plan with { Minimum = LayoutSearch.Minimum(request with { Tp = null, Pp = null, Dp = null, Gpus = null }) };
                output.Write(parse.GetValue(json) ? PlanJsonWriter.Write(plan) : PlanTableRenderer.Render(plan));
                return plan.Fits ? ExitFits : ExitDoesNotFit;
            }
            catch (Exception e) when (e is PlanningException or ModelConfigException or RunSpecException or HoconException or IOException)
            {
                error.WriteLine($"rt plan: {e.Message}");
                return ExitError;
            }
        });
        return command;
    }

    /// <summary>
    /// The run spec's plan request: its layout checked against the model first (as the validator would refuse it), the
    /// model's architecture from <paramref name="model"/> when given (the spec's folder is usually on the cluster's
    /// filesystem, not the planning machine's), else from run.model's config.json.
    /// </summary>
    static PlanRequest SpecRequest(string path, IReadOnlyList<string> sets, string? model, GpuSpec gpu)
    {
        if (!File.Exists(path)) throw new PlanningException($"--spec {path} does not exist");
        var spec = RunSpecParser.Load(path, sets);
        LlamaConfig config;
        if (model is not null) config = LoadModel(model);
        else if (Directory.Exists(spec.Model) || File.Exists(spec.Model)) config = LlamaConfig.Load(spec.Model);
        else
            throw new PlanningException(
                $"{path}: run.model {spec.Model} does not exist here; plan its architecture with --model " +
                $"({string.Join(", ", LlamaPresets.ByName.Keys)}, or a folder holding its config.json)");
        var problems = RunSpecValidator.LayoutProblems(spec, config);
        if (problems.Count > 0) throw new RunSpecException(path, problems);
        return RunSpecPlanning.Request(spec, config, gpu, model ?? spec.Model);
    }

    /// <summary>A preset name, or a Hugging Face model folder (or its config.json).</summary>
    static LlamaConfig LoadModel(string model)
    {
        if (LlamaPresets.ByName.TryGetValue(model, out var preset)) return preset;
        if (Directory.Exists(model) || File.Exists(model)) return LlamaConfig.Load(model);
        throw new PlanningException(
            $"--model '{model}' is neither a preset ({string.Join(", ", LlamaPresets.ByName.Keys)}) nor a folder with config.json");
    }
}
