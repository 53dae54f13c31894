using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;
using Runtime.Training.Planning;
using Runtime.Training.Tests.Data;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Metrics;

/// <summary>One configuration of a measured training step and the plan request that describes the same step.</summary>
internal sealed record MeasuredStep(LlamaConfig Config, FineTuneMethod Method, int SequenceLength, bool Recompute, bool Packing = false,
    double LoraDropout = 0, int LoraRank = 8)
{
    public ScalarType DType => Method == FineTuneMethod.Qlora ? ScalarType.BFloat16 : ScalarType.Float32;

    public LoraConfig Lora => new(LoraRank, 2 * LoraRank, LoraDropout, LoraConfig.AllTargets);

    /// <summary>The step as the planner sees it: one stage, one rank, one micro-batch of one row, fused attention.</summary>
    public PlanRequest Request => new()
    {
        Model = Config, Method = Method, Lora = new LoraSettings(LoraRank, LinearModule.AllNames, LoraDropout),
        Precision = Method == FineTuneMethod.Qlora ? ComputePrecision.Bf16 : ComputePrecision.Fp32,
        MicroBatchSize = 1, SequenceLength = SequenceLength, Packing = Packing, GradientCheckpointing = Recompute, MicroBatches = 1,
        Attention = AttentionKernel.Fused, Engine = ActivationEngine.RuntimeCpu,
        Gpu = new GpuSpec("cpu", "host memory", 1L << 40, 1, "test"), Tp = 1, Pp = 1, Dp = 1,
    };

    public MemoryBreakdown Predicted => MemoryPlanner.PlanLayout(Request, new ParallelLayout(1, 1, 1)).Stages[0].Memory;

    public LlamaSlice CreateModel()
    {
        var options = new LlamaModelOptions
        {
            DType = DType, RequiresGrad = Method == FineTuneMethod.Full,
            ProjectionBase = Method == FineTuneMethod.Qlora ? ProjectionBase.Nf4 : ProjectionBase.Dense,
            Attention = AttentionImplementation.ScaledDotProduct,
        };
        var slice = LlamaSlice.Build(Config, LlamaSliceSpec.Whole(Config), options, new LlamaInitializer(3).AsFactory());
        if (Method != FineTuneMethod.Full) LoraInjector.Inject(slice, Lora, 5);
        return slice;
    }

    /// <summary>Rows of exactly <see cref="SequenceLength"/> tokens, every token learned (packed: two samples a row).</summary>
    public TrainingBatches Batches()
    {
        var random = new Random(7);
        int length = Packing ? SequenceLength / 2 : SequenceLength;
        var samples = Enumerable.Range(0, 8).Select(_ =>
            (Enumerable.Range(0, length).Select(_ => 1 + random.Next(Config.VocabSize - 1)).ToArray(),
             Enumerable.Repeat((byte)1, length).ToArray())).ToArray();
        var source = new InMemorySamples(SequenceLength, samples);
        IExampleSet examples = Packing ? new PackedExamples(source) : new SampleExamples(source);
        return TrainingBatches.InMemory(examples, new SamplerOptions(1), padId: 0, padToMultipleOf: 1);
    }

    /// <summary>
    /// Runs a warm-up step (lasting state: gradients' first allocation, lazy caches), then measures
    /// <paramref name="steps"/> steps and keeps each activation figure's largest (the peak is sampled from another
    /// thread, which a busy machine can keep from running at the peak's moment; more steps, more chances).
    /// </summary>
    public StepMemory Measure(int steps = 1)
    {
        using var model = CreateModel();
        using var loop = new TrainingLoop(model, Batches(), new TrainingLoopOptions
        {
            Layout = new BatchLayout(1, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-4, 1 + steps, 0), MaxSteps = 1 + steps,
            Recompute = Recompute, Seed = 1, WatchActivationPeak = true,
        });
        loop.RunStep();
        StepMemory? result = null;
        for (int i = 0; i < steps; i++)
        {
            // Tensors some earlier code left to the finalizer must not be freed in the middle of the measured step.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var m = loop.RunStep().Memory!;
            result = result is null ? m : m with
            {
                ActivationsSaved = Math.Max(result.ActivationsSaved, m.ActivationsSaved),
                ActivationsPeak = Math.Max(result.ActivationsPeak ?? 0, m.ActivationsPeak ?? 0),
            };
        }
        return result!;
    }

    public override string ToString() =>
        $"{Method} {(Config.HiddenSize == 64 ? "tiny" : Config.HiddenSize == 768 ? "small" : $"h{Config.HiddenSize} V{Config.VocabSize}")} seq {SequenceLength}{(Recompute ? " recompute" : "")}{(Packing ? " packed" : "")}{(LoraDropout > 0 ? $" dropout {LoraDropout}" : "")}";
}
