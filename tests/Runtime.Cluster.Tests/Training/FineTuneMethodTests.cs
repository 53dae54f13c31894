using Runtime.Cluster.Driving;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Tests.Tokenization;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using TorchSharp;
using Xunit.Abstractions;

namespace Runtime.Cluster.Tests.Training;

/// <summary>Full fine-tuning and QLoRA through the same workers: what they export, and that the layout does not change it.</summary>
[Collection(TrainingClusterCollection.Name)]
public sealed class FineTuneMethodTests(TrainingCluster cluster, ITestOutputHelper output)
{
    [Fact]
    public async Task Full_fine_tuning_over_two_stages_exports_the_model_the_single_worker_loop_trains()
    {
        var spec = cluster.Run.Spec("full-pp2", data: 1, pipeline: 2, more: ["method=full", "train.max-steps=3", "train.lr=1e-3"]);
        await cluster.Train(spec);
        var folder = Path.Combine(spec.Output, RunOutputs.ModelFolder);
        Assert.True(File.Exists(Path.Combine(folder, "config.json")));
        Assert.True(File.Exists(Path.Combine(folder, "tokenizer.json")));

        // The yardstick: every weight trainable in one loop, set up by hand.
        Dictionary<string, double[]> expected;
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);
        try
        {
            using var source = new HfModelFolder(cluster.Run.Model);
            using var model = LlamaLoader.Load(source, MicroRun.Config, options: new LlamaModelOptions { RequiresGrad = true });
            using var data = TrainingData.Open(cluster.Run.Data, new RealTokenizerFixture().Tokenizer,
                new TrainingDataOptions(new DataOptions(MicroRun.RowLength), new SamplerOptions((ulong)MicroRun.Seed)));
            using var loop = new TrainingLoop(model, TrainingBatches.From(data), new TrainingLoopOptions
            {
                Layout = new BatchLayout(2, 4, 1),
                Schedule = new LrSchedule(LrScheduleKind.Linear, 1e-3, 3, 0),
                Optimizer = new OptimizerStepOptions { AdamW = new AdamWOptions { WeightDecay = 0.01 }, MaxGradNorm = 1.0 },
                Seed = MicroRun.Seed,
                MaxSteps = 3,
            });
            loop.Run();
            expected = model.named_parameters().ToDictionary(p => p.name, p => MicroRun.Values(p.parameter));
        }
        finally
        {
            torch.set_num_threads(threads);
        }

        using var exported = new HfModelFolder(folder);
        var actual = expected.Keys.ToDictionary(n => n, n =>
        {
            using var t = exported.Load(n);
            return MicroRun.Values(t);
        });
        Assert.Equal(expected.Keys.Order(), exported.Names.Order());
        double difference = MicroRun.RelativeDifference(expected, actual);
        output.WriteLine($"full fine-tuning, pipeline 2: max relative difference to the loop {difference:E2}");
        Assert.Equal(0, difference);
    }

    [Fact]
    public async Task QLoRA_in_bf16_with_recompute_trains_the_same_adapter_on_one_worker_and_over_two_stages()
    {
        string[] qlora = ["method=qlora", "train.precision=bf16", "train.grad-checkpointing=on", "train.max-steps=3"];
        var one = cluster.Run.Spec("qlora-1", data: 1, pipeline: 1, more: qlora);
        var two = cluster.Run.Spec("qlora-pp2", data: 1, pipeline: 2, more: qlora);
        await cluster.Train(one);
        await cluster.Train(two);
        var expected = MicroRun.Adapter(Path.Combine(one.Output, RunOutputs.AdapterFolder));
        var actual = MicroRun.Adapter(Path.Combine(two.Output, RunOutputs.AdapterFolder));
        Assert.NotEqual(0, expected.Values.Sum(v => v.Sum(Math.Abs)));
        double difference = MicroRun.RelativeDifference(expected, actual);
        output.WriteLine($"QLoRA bf16 with recompute, pipeline 2 against 1 worker: max relative difference {difference:E2}");
        Assert.Equal(0, difference);
    }
}
