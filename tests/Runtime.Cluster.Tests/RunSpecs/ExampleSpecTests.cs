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
        Assert.InRange(lines.Length, 64, 200);
        var prompts = new HashSet<string>();
        foreach (var line in lines)
        {
            using var row = JsonDocument.Parse(line);
            var instruction = row.RootElement.GetProperty("instruction").GetString()!;
            Assert.False(string.IsNullOrWhiteSpace(row.RootElement.GetProperty("output").GetString()));
            Assert.True(prompts.Add(instruction), $"duplicate prompt: {instruction}");
        }
    }

    [Fact]
    public void The_405b_qlora_spec_is_the_recipe()
    {
        var spec = Load("llama3.1-405b-qlora-b200.conf");
        Assert.Equal(FineTuneMethod.Qlora, spec.Method);
        Assert.Equal(new LoraSpec(16, 32, 0.05, LinearModule.AllNames), spec.Lora);
        Assert.Equal(new QloraSpec("nf4", true), spec.Qlora);
        Assert.Equal(new DataSpec("/data/train.jsonl", 4096, true), spec.Data);
        Assert.Equal(new TrainSpec(2, 16, 3, -1, 2e-4, LrScheduleKind.Cosine, 0.03, 0.01, 1.0, ComputePrecision.Bf16, true, 42), spec.Train);
        Assert.Equal(new CheckpointSpec(500, 3), spec.Checkpoint);
        Assert.Equal(new LogSpec(10, true), spec.Log);
        Assert.Equal(8, spec.Parallel.Workers); // one 8-GPU node
    }

    [Theory]
    [InlineData("llama3.1-405b-qlora-b200.conf", 8, 1, 4, 2)]
    [InlineData("llama3.1-405b-lora-b200.conf", 8, 1, 8, 1)]
    [InlineData("llama3.1-405b-full-b200.conf", 64, 8, 8, 1)]
    public void The_405b_specs_fit_the_405b_architecture_and_their_gpus(string file, int gpus, int pipeline, int tensor, int data)
    {
        using var dir = new TempDir();
        var model = Fixtures.Model(dir["405b"], LlamaPresets.Llama31_405B);
        var spec = Load(file, "model=" + model, "data.path=" + Fixtures.Data(dir["train.jsonl"]));
        Assert.Equal((data, pipeline, tensor), (spec.Parallel.Data, spec.Parallel.Pipeline, spec.Parallel.Tensor));
        Assert.Empty(RunSpecValidator.Problems(spec, availableSlots: gpus));
        Assert.Equal("run.parallel", Assert.Single(RunSpecValidator.Problems(spec, availableSlots: gpus - 1)).Key);
        // Their memory plans fit the B200s they are written for (8 a node).
        var b200 = GpuCatalog.Get("b200").CapacityBytes;
        Assert.Empty(RunSpecValidator.Problems(spec, new FixedSlotInventory(new NodeSlots(gpus, SlotKind.Gpu, b200))));
        // 128256 = 2^8 x 501 rows: the vocabulary splits over their tensor-parallel ranks too.
        Assert.Empty(RunSpecValidator.Problems(spec with { Parallel = spec.Parallel with { VocabParallel = true } }, availableSlots: gpus));
    }
}
