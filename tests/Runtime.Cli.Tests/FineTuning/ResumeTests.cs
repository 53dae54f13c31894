using Runtime.Model.Lora;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// Issue 3: N steps in one go and N/2 + resume + N/2 give bitwise the same adapter on CPU, with everything that could
/// drift switched on (LoRA dropout 0.05, packing, recompute, two micro-batches a step), for LoRA in fp32 and QLoRA in
/// bf16; the resumed half starts from fresh objects (a new data pipeline, a base loaded again, adapters drawn from
/// another seed) as a new process would. Both final checkpoints export to byte-identical PEFT adapters.
/// </summary>
[Collection(FineTuningCollection.Name)]
public sealed class ResumeTests : IClassFixture<ResumeTests.TinyFolder>
{
    public sealed class TinyFolder : IDisposable
    {
        public ScratchFolder Dir { get; } = new();
        public string Model { get; }
        public string Data { get; }

        public TinyFolder()
        {
            Model = TinyRun.Init(Dir["tiny"]);
            Data = TinyRun.WriteChat(Dir["chat.jsonl"], TinyRun.Pairs);
        }

        public void Dispose() => Dir.Dispose();
    }

    const int Steps = 6;
    readonly TinyFolder _tiny;

    public ResumeTests(TinyFolder tiny) => _tiny = tiny;

    TrainingLoopOptions Options(LoraConfig lora, bool qlora, long steps, string output, string? resumeFrom = null) => new()
    {
        Layout = new BatchLayout(1, 2, 1), Schedule = new LrSchedule(LrScheduleKind.Cosine, 2e-3, Steps, 1), MaxSteps = steps,
        Recompute = true, Seed = 11, OutputFolder = output, CheckpointEvery = Steps / 2, ResumeFrom = resumeFrom,
        Model = CheckpointModel.Adapter(lora, _tiny.Model, qlora),
    };

    /// <summary>Runs the loop over a freshly opened pipeline and a freshly loaded model; returns the records and the adapter's bits.</summary>
    (IReadOnlyList<StepRecord> Records, Dictionary<string, byte[]> Adapter) Run(LoraConfig lora, bool qlora, long adapterSeed,
        TrainingLoopOptions options, long? expectResumedAt = null)
    {
        // Rows of 32 packed tokens (two conversations), two micro-batches a step: bf16 matmuls are slow on CPUs
        // without bf16 instructions, and the 128k-entry head dominates every step.
        using var data = TinyRun.OpenData(_tiny.Data, _tiny.Model, maxSeqLength: 32, packing: true);
        using var slice = TinyRun.LoadWithLora(_tiny.Model, lora, adapterSeed, qlora ? ScalarType.BFloat16 : ScalarType.Float32, nf4: qlora);
        using var loop = new TrainingLoop(slice, TrainingBatches.From(data), options);
        if (expectResumedAt is { } step) Assert.Equal(step, loop.CompletedSteps);
        var records = loop.Run();
        return (records, LoraInjector.AdapterTensors(slice).ToDictionary(t => t.Name, t => TinyRun.Bits(t.Tensor)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_resumed_run_gives_bitwise_the_adapter_and_export_of_the_run_that_never_stopped(bool qlora)
    {
        using var dir = new ScratchFolder();
        var lora = TinyRun.Lora(dropout: 0.05);

        var straight = Run(lora, qlora, adapterSeed: 1, Options(lora, qlora, Steps, dir["straight"]));
        Run(lora, qlora, adapterSeed: 1, Options(lora, qlora, Steps / 2, dir["resumed"]));
        var resumed = Run(lora, qlora, adapterSeed: 2, Options(lora, qlora, Steps, dir["resumed"], Path.Combine(dir["resumed"], "checkpoint-3")),
            expectResumedAt: Steps / 2);

        Assert.Equal(straight.Records.Skip(Steps / 2).Select(r => (r.Step, r.Loss, r.GradNorm)), resumed.Records.Select(r => (r.Step, r.Loss, r.GradNorm)));
        Assert.Equal(straight.Adapter.Keys.Order(), resumed.Adapter.Keys.Order());
        Assert.Equal(4 * 7 * 2, straight.Adapter.Count);
        foreach (var (name, bits) in straight.Adapter) Assert.True(bits.SequenceEqual(resumed.Adapter[name]), $"'{name}' differs");

        foreach (var run in new[] { "straight", "resumed" })
        {
            var (exit, _, stderr) = Rt.Invoke("export", "--checkpoint", Path.Combine(dir[run], $"checkpoint-{Steps}"), "--out", dir[run + "-adapter"]);
            Assert.True(exit == 0, stderr);
        }
        foreach (var file in new[] { PeftAdapter.WeightsFileName, PeftAdapterConfig.FileName })
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir["straight-adapter"], file)), File.ReadAllBytes(Path.Combine(dir["resumed-adapter"], file)));

        // The export is the trained adapter itself: fp32 values bit for bit, under PEFT's names, with the run's config.
        using var exported = PeftAdapter.Load(dir["straight-adapter"]);
        Assert.Equal(lora, exported.Config);
        foreach (var (name, bits) in straight.Adapter) Assert.True(TinyRun.Bits(exported.Tensors[name]).SequenceEqual(bits), $"exported '{name}' differs");
    }

    [Fact]
    public void Dropout_is_live_in_these_runs()
    {
        // B starts at zero, so step 1's loss cannot see the dropout on A's input, but B's gradient can.
        using var dir = new ScratchFolder();
        double GradNorm(double dropout)
        {
            var lora = TinyRun.Lora(dropout);
            return Run(lora, qlora: false, adapterSeed: 1, Options(lora, false, 1, dir[$"p{dropout}"])).Records.Single().GradNorm;
        }
        Assert.NotEqual(GradNorm(0.0), GradNorm(0.05));
    }
}
