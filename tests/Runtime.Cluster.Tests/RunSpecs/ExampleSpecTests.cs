using System.Text.Json;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;
using Runtime.Training.Optim;
using Runtime.Training.Planning;

namespace Runtime.Cluster.Tests.RunSpecs;

/// <summary>The specs shipped in hocon/runs parse, say what their comments say, and fit their models.</summary>
public class ExampleSpecTests
{
    static RunSpec Load(string name, params string[] sets) => RunSpecParser.Load(Repo.Hocon("runs/" + name), sets);

    [Fact]
    public void Quickstart_points_at_the_tiny_model_and_the_shipped_data()
    {
        var spec = Load("quickstart.conf");
        Assert.Equal(Path.Combine(Repo.Root, "models", "tiny"), spec.Model);
        Assert.Equal(Repo.Hocon("runs/data/quickstart.jsonl"), spec.Data.Path);
        Assert.Equal(Path.Combine(Repo.Root, "runs", "quickstart"), spec.Output);
        Assert.Equal(FineTuneMethod.Lora, spec.Method);
        Assert.Equal(8, spec.Lora.R);
        Assert.Equal(256, spec.Data.MaxSeqLength);
        Assert.Equal(8, spec.SamplesPerStep);
        Assert.Equal(200, spec.Train.MaxSteps);
        Assert.Equal(1, spec.Parallel.Workers);
    }

    [Fact]
    public void Quickstart_is_valid_for_the_tiny_preset_on_one_slot()
    {
        using var dir = new TempDir();
        var model = Fixtures.Model(dir["tiny"], LlamaPresets.Tiny);
        var spec = Load("quickstart.conf", "model=" + model);
        Assert.Empty(RunSpecValidator.Problems(spec, availableSlots: 1));
        // Its memory plan fits a CPU slot of 2 GiB (a quarter of an 8 GiB laptop's memory).
        Assert.Empty(RunSpecValidator.Problems(spec, new FixedSlotInventory(new NodeSlots(4, SlotKind.Cpu, 2L << 30))));
    }

    [Fact]
    public void Quickstart_data_is_instruction_rows_with_distinct_prompts()
    {
        var lines = File.ReadAllLines(Repo.Hocon("runs/data/quickstart.jsonl"));
        Assert.InRange(lines.Length, 16, 64); // few enough for the tiny model to memorize in 200 steps
        var prompts = new HashSet<string>();
        foreach (var line in lines)
        {
            using var row = JsonDocument.Parse(line);
            var instruction = row.RootElement.GetProperty("instruction").GetString()!;
            Assert.False(string.IsNullOrWhiteSpace(row.RootElement.GetProperty("output").GetString()));
            Assert.True(prompts.Add(instruction), $"duplicate prompt: {instruction}");
        }
    }

    [Theory]
    [InlineData("llama3.1-405b-qlora-b200.conf", FineTuneMethod.Qlora)]
    [InlineData("llama3.1-405b-lora-b200.conf", FineTuneMethod.Lora)]
    public void The_405b_adapter_specs_are_the_recipe(string file, FineTuneMethod method)
    {
        var spec = Load(file);
        Assert.Equal(method, spec.Method);
        Assert.Equal(new LoraSpec(16, 32, 0.05, LinearModule.AllNames), spec.Lora);
        Assert.Equal(new QloraSpec("nf4", true), spec.Qlora);
        Assert.Equal(new DataSpec("/data/train.jsonl", 4096, true), spec.Data);
        Assert.Equal(new TrainSpec(2, 16, 3, -1, 2e-4, LrScheduleKind.Cosine, 0.03, 0.01, 1.0, ComputePrecision.Bf16, true, 42), spec.Train);
        Assert.Equal(new CheckpointSpec(500, 3), spec.Checkpoint);
        Assert.Equal(new LogSpec(10, true), spec.Log);
        Assert.Equal(8, spec.Parallel.Workers); // one 8-GPU node
    }

    [Fact]
    public void The_405b_full_spec_is_the_recipe_with_a_full_fine_tuning_learning_rate()
    {
        var spec = Load("llama3.1-405b-full-b200.conf");
        Assert.Equal(FineTuneMethod.Full, spec.Method);
        Assert.Equal(new DataSpec("/data/train.jsonl", 4096, true), spec.Data);
        Assert.Equal(new TrainSpec(2, 16, 3, -1, 1e-5, LrScheduleKind.Cosine, 0.03, 0.01, 1.0, ComputePrecision.Bf16, true, 42), spec.Train);
        Assert.Equal(new CheckpointSpec(500, 3), spec.Checkpoint);
        Assert.Equal(new LogSpec(10, true), spec.Log);
    }

    [Theory]
    [InlineData("llama3.1-405b-qlora-b200.conf", 8, 1, 4, 2, false)]
    [InlineData("llama3.1-405b-lora-b200.conf", 8, 1, 8, 1, true)]
    [InlineData("llama3.1-405b-full-b200.conf", 64, 8, 8, 1, true)]
    public void The_405b_specs_fit_the_405b_architecture_and_their_gpus(string file, int gpus, int pipeline, int tensor, int data, bool vocabParallel)
    {
        using var dir = new TempDir();
        var model = Fixtures.Model(dir["405b"], LlamaPresets.Llama31_405B);
        var spec = Load(file, "model=" + model, "data.path=" + Fixtures.Data(dir["train.jsonl"]));
        Assert.Equal((data, pipeline, tensor, vocabParallel),
            (spec.Parallel.Data, spec.Parallel.Pipeline, spec.Parallel.Tensor, spec.Parallel.VocabParallel));
        Assert.Empty(RunSpecValidator.Problems(spec, availableSlots: gpus));
        Assert.Equal("run.parallel", Assert.Single(RunSpecValidator.Problems(spec, availableSlots: gpus - 1)).Key);
        // Their memory plans fit the B200s they are written for (8 a node): admission lets them in.
        var b200 = GpuCatalog.Get("b200").CapacityBytes;
        Assert.Empty(RunSpecValidator.Problems(spec, new FixedSlotInventory(new NodeSlots(gpus, SlotKind.Gpu, b200))));
        // 128256 = 2^8 x 501 rows: the vocabulary splits over their tensor-parallel ranks either way.
        Assert.Empty(RunSpecValidator.Problems(spec with { Parallel = spec.Parallel with { VocabParallel = !vocabParallel } }, availableSlots: gpus));
    }

    /// <summary>Every spec in hocon/runs, by file name.</summary>
    static IReadOnlyList<string> ShippedSpecFiles() =>
        Directory.GetFiles(Repo.Hocon("runs"), "*.conf").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToList();

    public static TheoryData<string> ShippedSpecs() => new(ShippedSpecFiles());

    [Fact]
    public void The_shipped_specs_include_the_405b_ones()
    {
        Assert.Superset(new HashSet<string> { "quickstart.conf", "llama3.1-405b-qlora-b200.conf", "llama3.1-405b-lora-b200.conf", "llama3.1-405b-full-b200.conf" },
            ShippedSpecFiles().ToHashSet());
    }

    /// <summary>
    /// Each spec, planned on the GPU and with the architecture its header's `rt plan --spec` command names, fits with
    /// exactly its own layout: as many GPUs as its workers, its tp x pp x dp, its grad-accum micro-batches a step.
    /// </summary>
    [Theory]
    [MemberData(nameof(ShippedSpecs))]
    public void Every_shipped_spec_fits_the_gpus_its_layout_asks_for(string file)
    {
        var args = HeaderPlanCommand(file);
        Assert.Equal("hocon/runs/" + file, OptionValue(args, "--spec"));
        var model = LlamaPresets.ByName[OptionValue(args, "--model") ?? throw new Xunit.Sdk.XunitException($"{file}: its rt plan command names no --model")];
        var gpu = GpuCatalog.Get(OptionValue(args, "--gpu") ?? "b200");
        var spec = Load(file);
        Assert.Empty(RunSpecValidator.LayoutProblems(spec, model));

        var plan = MemoryPlanner.Plan(RunSpecPlanning.Request(spec, model, gpu));
        Assert.True(plan.Fits, $"{file}: {plan.Chosen.PeakBytes / 1e9:0.0} GB per GPU is over the budget of {plan.BudgetBytes / 1e9:0.0} GB");
        Assert.Equal(spec.Parallel.Workers, plan.Gpus);
        Assert.Equal(new ParallelLayout(spec.Parallel.Tensor, spec.Parallel.Pipeline, spec.Parallel.Data), plan.Chosen.Layout);
        Assert.Equal(spec.Train.GradAccum, plan.Chosen.MicroBatches);
        Assert.Equal(spec.Parallel.VocabParallel && spec.Parallel.Tensor > 1, plan.Request.VocabularyParallel);
    }

    /// <summary>The arguments after `rt` of the `rt plan --spec` command in the spec's leading comment.</summary>
    static string[] HeaderPlanCommand(string file)
    {
        var line = File.ReadLines(Repo.Hocon("runs/" + file))
            .TakeWhile(l => l.StartsWith('#'))
            .Select(l => l.TrimStart('#').Trim())
            .FirstOrDefault(l => l.StartsWith("rt plan --spec ", StringComparison.Ordinal));
        Assert.True(line is not null, $"{file}: its header comment has no `rt plan --spec` command");
        return line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..];
    }

    static string? OptionValue(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i < 0 || i + 1 >= args.Length ? null : args[i + 1];
    }
}
