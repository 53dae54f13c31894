using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Cluster.Hosting;
using Runtime.Model.Config;
using Runtime.Model.TensorParallel;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// Checks a parsed <see cref="RunSpec"/> against the world before anything starts: the model folder and its
/// config.json, the data file, the parallel layout against the model's layers and heads, the worker count against
/// the slots available, and the memory plan against the smallest slot (<see cref="MemoryAdmission"/>). Every problem
/// names the key to change.
/// </summary>
public static class RunSpecValidator
{
    /// <summary>Throws <see cref="RunSpecException"/> naming every problem; returns the model's config when all is well.</summary>
    public static LlamaConfig Validate(RunSpec spec, ISlotInventory slots, string? source = null)
    {
        var problems = Problems(spec, slots, out var model);
        if (problems.Count > 0) throw new RunSpecException(source ?? spec.Name, problems);
        return model!;
    }

    /// <summary>Against <paramref name="availableSlots"/> slots of unknown memory: the memory plan is not checked.</summary>
    public static LlamaConfig Validate(RunSpec spec, int availableSlots, string? source = null) =>
        Validate(spec, new FixedSlotInventory(availableSlots), source);

    public static IReadOnlyList<SpecProblem> Problems(RunSpec spec, ISlotInventory slots) => Problems(spec, slots, out _);

    /// <summary>Against <paramref name="availableSlots"/> slots of unknown memory: the memory plan is not checked.</summary>
    public static IReadOnlyList<SpecProblem> Problems(RunSpec spec, int availableSlots) => Problems(spec, new FixedSlotInventory(availableSlots), out _);

    static IReadOnlyList<SpecProblem> Problems(RunSpec spec, ISlotInventory slots, out LlamaConfig? model)
    {
        var offers = slots.Offers();
        int availableSlots = offers.Sum(o => o.Slots.Count);
        var problems = new List<SpecProblem>();
        void Add(string key, string message) => problems.Add(new SpecProblem(key, message));

        model = CheckModel(spec, Add);

        if (!File.Exists(spec.Data.Path))
            Add("run.data.path", Directory.Exists(spec.Data.Path)
                ? $"run.data.path: {spec.Data.Path} is a folder; it must be a JSONL file"
                : $"run.data.path: {spec.Data.Path} does not exist");

        var p = spec.Parallel;
        if (model is not null) problems.AddRange(LayoutProblems(spec, model));

        if (p.Workers > availableSlots)
            Add("run.parallel",
                $"run.parallel: data {p.Data} x pipeline {p.Pipeline} x tensor {p.Tensor} = {p.Workers} workers need {p.Workers} slots; {availableSlots} available");

        // The plan needs a model and a layout it can split; problems with either are reported above instead.
        bool plannable = model is not null && !problems.Any(x => x.Key is "run.model" or "run.method" || x.Key.StartsWith("run.parallel.", StringComparison.Ordinal));
        if (plannable && MemoryAdmission.Check(spec, model!, offers) is { } refusal) problems.Add(refusal);
        return problems;
    }

    /// <summary>
    /// What the spec's layout asks of <paramref name="model"/> alone (no files, no slots): a layer per pipeline stage,
    /// a tensor-parallel size the heads and MLP (and, split, the vocabulary) divide by, no tied table across stages
    /// under full fine-tuning. `rt plan --spec` checks these before sizing the layout.
    /// </summary>
    public static IReadOnlyList<SpecProblem> LayoutProblems(RunSpec spec, LlamaConfig model)
    {
        var problems = new List<SpecProblem>();
        void Add(string key, string message) => problems.Add(new SpecProblem(key, message));
        var p = spec.Parallel;
        if (p.Pipeline > model.NumHiddenLayers)
            Add("run.parallel.pipeline",
                $"run.parallel.pipeline = {p.Pipeline} exceeds the model's {model.NumHiddenLayers} layers (num_hidden_layers); every stage needs a layer");
        CheckTensorParallel(p, model, Add);
        if (spec.Method == FineTuneMethod.Full && p.Pipeline > 1 && model.TieWordEmbeddings)
            Add("run.parallel.pipeline",
                $"run.parallel.pipeline = {p.Pipeline} with method = full: the model ties its embedding and LM head (tie_word_embeddings), which would then live on two stages whose gradients must be summed; that is not supported yet; use pipeline = 1 or a LoRA method");
        return problems;
    }

    /// <summary>
    /// The model's own rule for a tensor-parallel split (<see cref="TensorParallelShard.Validate"/>: the size must divide
    /// the attention heads, the key/value heads and the MLP width), reported under run.parallel.tensor; the vocabulary
    /// split's extra rule (the size divides vocab_size) under run.parallel.vocab-parallel, since turning that off fixes it.
    /// </summary>
    static void CheckTensorParallel(ParallelSpec p, LlamaConfig model, Action<string, string> add)
    {
        if (p.Tensor == 1) return;
        if (Refusal(new TensorParallelShard(0, p.Tensor), model) is { } split)
        {
            add("run.parallel.tensor", $"run.parallel.tensor = {p.Tensor}: {split}");
            return;
        }
        if (p.VocabParallel && Refusal(new TensorParallelShard(0, p.Tensor) { VocabularyParallel = true }, model) is { } vocabulary)
            add("run.parallel.vocab-parallel", $"run.parallel.vocab-parallel = on with tensor = {p.Tensor}: {vocabulary}; use vocab-parallel = off");
    }

    static string? Refusal(TensorParallelShard shard, LlamaConfig model)
    {
        try
        {
            shard.Validate(model);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }

    static LlamaConfig? CheckModel(RunSpec spec, Action<string, string> add)
    {
        var folder = spec.Model;
        if (!Directory.Exists(folder))
        {
            add("run.model", File.Exists(folder)
                ? $"run.model: {folder} is a file; it must be a model folder holding config.json"
                : $"run.model: {folder} does not exist");
            return null;
        }
        var configFile = Path.Combine(folder, "config.json");
        if (!File.Exists(configFile))
        {
            add("run.model", $"run.model: {folder} has no config.json (not a Hugging Face model folder)");
            return null;
        }
        LlamaConfig model;
        try
        {
            model = LlamaConfig.Load(configFile);
        }
        catch (ModelConfigException e)
        {
            add("run.model", $"run.model: {e.Message}");
            return null;
        }
        if (IsQuantized(configFile) && spec.Method != FineTuneMethod.Qlora)
            add("run.method",
                $"run.method = {PlanNames.Method(spec.Method)} needs full-precision base weights, but {folder} is 4-bit (quantization_config in config.json); use method = qlora");
        return model;
    }

    /// <summary>A 4-bit folder from `rt quantize` (or transformers + bitsandbytes) carries a quantization_config.</summary>
    static bool IsQuantized(string configFile)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(configFile)) is JsonObject o && o["quantization_config"] is JsonObject;
        }
        catch (JsonException)
        {
            return false; // LlamaConfig.Load has already parsed it; unreachable in practice
        }
    }
}
