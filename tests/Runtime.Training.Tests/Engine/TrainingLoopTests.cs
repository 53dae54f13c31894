using Runtime.Model.Llama;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;
using Runtime.Training.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

[Collection(TorchTrainingCollection.Name)]
public sealed class TrainingLoopTests : IDisposable
{
    readonly DataTempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    static TrainingLoopOptions Options(long maxSteps, bool recompute = false, double lr = 3e-3) => new()
    {
        Layout = new BatchLayout(4, 2, 1),
        Schedule = new LrSchedule(LrScheduleKind.Cosine, lr, totalSteps: 40, warmupSteps: 2),
        Seed = 17,
        MaxSteps = maxSteps,
        Recompute = recompute,
    };

    [Fact]
    public void A_short_run_drives_the_loss_clearly_down()
    {
        using var model = MicroModel.Create(MicroModel.Config(layers: 2));
        // Next token = previous + 1: a pattern a fresh model does not know and learns within a few dozen steps.
        using var loop = new TrainingLoop(model, MicroModel.Batches(maxStride: 1), Options(40, recompute: true, lr: 1e-2));
        var records = loop.Run();

        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), records.Select(r => r.Step));
        double first = records[0].Loss, last = records.TakeLast(5).Average(r => r.Loss);
        // A fresh model is near uniform over 256 tokens (ln 256 = 5.5).
        Assert.InRange(first, 5.0, 6.0);
        Assert.True(last < 0.5 * first, $"loss {first:F3} -> {last:F3}");
        Assert.Equal(0.0, records[0].LearningRate); // HF's warmup: the first update runs at lr 0
        Assert.All(records, r => Assert.True(r.GradNorm > 0 && r.LabelledTokens > 0 && r.InputTokens >= r.LabelledTokens));
    }

    [Theory]
    [InlineData(ScalarType.Float32, false)]
    [InlineData(ScalarType.BFloat16, true)]
    public void A_resumed_run_is_bitwise_the_run_that_never_stopped(ScalarType dtype, bool recompute)
    {
        var config = MicroModel.Config();
        string straightFolder = _temp.File("straight"), resumedFolder = _temp.File("resumed");

        // Six steps in one go, saving at 3 and 6.
        IReadOnlyList<StepRecord> straight;
        Dictionary<string, byte[]> straightParameters, straightMoments;
        using (var model = MicroModel.Create(config, dtype: dtype))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), Options(6, recompute) with { OutputFolder = straightFolder, CheckpointEvery = 3 }))
        {
            straight = loop.Run();
            (straightParameters, straightMoments) = Snapshot(loop, model);
        }

        // Three steps, a checkpoint, everything thrown away; then new objects (a model initialised differently, new
        // data and optimizer) resume from the checkpoint for the last three.
        using (var model = MicroModel.Create(config, dtype: dtype))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), Options(3, recompute) with { OutputFolder = resumedFolder, CheckpointEvery = 3 }))
            loop.Run();
        IReadOnlyList<StepRecord> resumed;
        using (var model = MicroModel.Create(config, dtype: dtype, seed: 999))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), Options(6, recompute) with
               {
                   OutputFolder = resumedFolder, CheckpointEvery = 3, ResumeFrom = Path.Combine(resumedFolder, "checkpoint-3"),
               }))
        {
            Assert.Equal(3, loop.CompletedSteps);
            Assert.Equal(3 * 8, loop.DataPosition);
            resumed = loop.Run();
            var (parameters, moments) = Snapshot(loop, model);
            Assert.Equal(straightParameters.Keys.Order(), parameters.Keys.Order());
            foreach (var (name, bits) in straightParameters) Assert.True(bits.SequenceEqual(parameters[name]), $"parameter '{name}' differs");
            foreach (var (name, bits) in straightMoments) Assert.True(bits.SequenceEqual(moments[name]), $"optimizer state '{name}' differs");
        }

        Assert.Equal(straight.Skip(3).Select(r => (r.Step, r.Loss, r.GradNorm, r.LearningRate)), resumed.Select(r => (r.Step, r.Loss, r.GradNorm, r.LearningRate)));
        // The two checkpoints of step 6 hold the same bytes.
        foreach (var file in new[] { "trainable.0.safetensors", "optimizer.0.safetensors", "state.json" })
            Assert.Equal(CheckpointFile.Of(Path.Combine(straightFolder, "checkpoint-6", file)).Sha256,
                CheckpointFile.Of(Path.Combine(resumedFolder, "checkpoint-6", file)).Sha256);
    }

    /// <summary>The model's weights (bf16 or fp32, as the model holds them), the optimizer's fp32 values and its moments, as raw bits.</summary>
    static (Dictionary<string, byte[]> Parameters, Dictionary<string, byte[]> Moments) Snapshot(TrainingLoop loop, LlamaSlice model)
    {
        var parameters = model.named_parameters().ToDictionary(p => "model:" + p.name, p => MicroModel.Bits(p.parameter));
        foreach (var (name, tensor) in loop.Optimizer.Parameters) parameters["optimizer:" + name] = MicroModel.Bits(tensor);
        var state = loop.Optimizer.ExportOptimizerState();
        var moments = state.ToDictionary(s => s.Key, s => MicroModel.Bits(s.Value));
        foreach (var t in state.Values) t.Dispose();
        moments["step"] = BitConverter.GetBytes(loop.Optimizer.StepCount);
        return (parameters, moments);
    }

    [Fact]
    public void A_resume_refuses_a_checkpoint_of_another_seed()
    {
        var config = MicroModel.Config(layers: 1);
        var folder = _temp.File("run");
        using (var model = MicroModel.Create(config))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), Options(1) with { OutputFolder = folder, CheckpointEvery = 1 }))
            loop.Run();
        using var fresh = MicroModel.Create(config);
        var error = Assert.Throws<CheckpointException>(() => new TrainingLoop(fresh, MicroModel.Batches(),
            Options(2) with { Seed = 18, ResumeFrom = Path.Combine(folder, "checkpoint-1") }));
        Assert.Contains("written with seed 17; this run has seed 18", error.Message);
    }

    [Fact]
    public void The_live_tensor_count_stays_flat_over_50_steps_with_checkpoints_and_metrics()
    {
        var config = MicroModel.Config(layers: 1);
        using var model = MicroModel.Create(config);
        using var metrics = new JsonLinesMetricsSink(_temp.File(JsonLinesMetricsSink.DefaultFileName));
        var options = Options(55, recompute: true) with
        {
            OutputFolder = _temp.File("out"), CheckpointEvery = 10, KeepLast = 2, Metrics = [metrics],
            Schedule = new LrSchedule(LrScheduleKind.Linear, 1e-3, 55, 5),
        };
        using var loop = new TrainingLoop(model, MicroModel.Batches(maxLength: 16), options);
        for (int i = 0; i < 5; i++) loop.RunStep(); // the first steps create lasting state (gradient buffers, moments)

        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var records = loop.Run();
        Assert.Equal(50, records.Count);
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.Equal([40L, 50], CheckpointFolders.Committed(options.OutputFolder!).Select(c => c.Step));
        Assert.Equal(55, File.ReadAllLines(metrics.Path).Length);

        // The count does see a leak: one forgotten gradient handle moves it.
        var leaked = loop.Engine.TrainableParameters[0].Parameter.detach();
        Assert.Equal(before + 1, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        leaked.Dispose();
    }
}
