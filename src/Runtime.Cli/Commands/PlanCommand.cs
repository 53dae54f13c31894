using System.CommandLine;
using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt plan`: how many GPUs a fine-tuning run needs and whether it fits, per GPU and per category, before a
/// GPU-hour is spent. Exit codes: 0 the plan fits, 2 it does not fit (the plan is still printed), 1 bad input.
/// </summary>
public static class PlanCommand
{
    public const int ExitFits = 0;
    public const int ExitError = 1;
    public const int ExitDoesNotFit = 2;

    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = $"A preset ({string.Join(" | ", LlamaPresets.ByName.Keys)}) or a folder holding config.json",
            Required = true,
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
            Description = "Plan Megatron's vocab-parallel embedding/head/loss under tp (Runtime's workers replicate the vocabulary today)",
        };
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };

        var command = new Command("plan", "How many GPUs a fine-tuning run needs, per GPU and per category; exit 0 fits, 2 does not fit, 1 bad input");
        foreach (var o in new Option[] { model, method, loraRank, loraTargets, loraDropout, precision, tp, pp, dp, microBatch, seqLen, packing,
                                         recompute, microBatches, schedule, attention, gpu, gpus, headroom, vocabParallel, json })
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            try
            {
                var modelArg = parse.GetValue(model)!;
                var request = new PlanRequest
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
                    Gpu = GpuCatalog.Get(parse.GetValue(gpu)!),
                    Gpus = parse.GetValue(gpus),
                    Tp = parse.GetValue(tp),
                    Pp = parse.GetValue(pp),
                    Dp = parse.GetValue(dp),
                    Headroom = parse.GetValue(headroom),
                };
                var plan = MemoryPlanner.Plan(request);
                output.Write(parse.GetValue(json) ? PlanJsonWriter.Write(plan) : PlanTableRenderer.Render(plan));
                return plan.Fits ? ExitFits : ExitDoesNotFit;
            }
            catch (Exception e) when (e is PlanningException or ModelConfigException)
            {
                error.WriteLine($"rt plan: {e.Message}");
                return ExitError;
            }
        });
        return command;
    }

    /// <summary>A preset name, or a Hugging Face model folder (or its config.json). Run specs are not read here yet.</summary>
    static LlamaConfig LoadModel(string model)
    {
        if (LlamaPresets.ByName.TryGetValue(model, out var preset)) return preset;
        if (Directory.Exists(model) || File.Exists(model)) return LlamaConfig.Load(model);
        throw new PlanningException(
            $"--model '{model}' is neither a preset ({string.Join(", ", LlamaPresets.ByName.Keys)}) nor a folder with config.json");
    }
}
