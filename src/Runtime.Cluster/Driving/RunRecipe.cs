using System.Security.Cryptography;
using System.Text;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tokenization;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using Runtime.Training.Planning;
using static TorchSharp.torch;

namespace Runtime.Cluster.Driving;

/// <summary>
/// What a run spec means for training, in one place: the batch layout, the data options, the schedule, the optimizer,
/// the model options, LoRA, and how the layers are split into stages. The driver and every worker read the spec
/// through this, so they cannot disagree.
/// </summary>
public static class RunRecipe
{
    /// <summary>Micro-batch size x gradient accumulation x data-parallel replicas (Hugging Face's arithmetic).</summary>
    public static BatchLayout Layout(RunSpec spec) => new(spec.Train.MicroBatchSize, spec.Train.GradAccum, spec.Parallel.Data);

    /// <summary>
    /// Tokenization, packing and the sampler (seeded by the run's seed, as Hugging Face seeds its sampler). Conversations
    /// are rendered with the chat template the model folder names, the one `rt generate --chat` (and transformers'
    /// apply_chat_template) will prompt the trained model with.
    /// </summary>
    public static TrainingDataOptions DataOptions(RunSpec spec) =>
        new(new DataOptions(spec.Data.MaxSeqLength) { Template = ChatTemplate.FromModelFolder(spec.Model) }, new SamplerOptions(unchecked((ulong)spec.Train.Seed)))
        {
            Packing = spec.Data.Packing,
        };

    /// <summary>max-steps when set, else the whole steps in the epochs (see <see cref="GlobalSampler.TotalSteps"/>).</summary>
    public static long TotalSteps(RunSpec spec, TrainingData data)
    {
        long steps = spec.Train.MaxSteps > 0 ? spec.Train.MaxSteps : data.TotalSteps(spec.Train.Epochs, Layout(spec));
        if (steps < 1)
            throw new RunSpecException(spec.Name, [new SpecProblem("run.train.epochs",
                $"run.train.epochs = {spec.Train.Epochs} of {data.Examples.Count} examples is not one step of {Layout(spec).GlobalBatch} samples (micro-batch-size x grad-accum x parallel.data); add data, or set run.train.max-steps")]);
        return steps;
    }

    /// <summary>The learning rate schedule over <paramref name="totalSteps"/> with warm-up ceil(total x warmup-ratio).</summary>
    public static LrSchedule Schedule(RunSpec spec, long totalSteps) =>
        LrSchedule.WithWarmupRatio(spec.Train.Schedule, spec.Train.Lr, totalSteps, spec.Train.WarmupRatio);

    /// <summary>AdamW with the spec's weight decay (Hugging Face's decay groups); clipping at max-grad-norm (0: none).</summary>
    public static OptimizerStepOptions Optimizer(RunSpec spec) => new()
    {
        AdamW = new AdamWOptions { WeightDecay = spec.Train.WeightDecay },
        MaxGradNorm = spec.Train.MaxGradNorm > 0 ? spec.Train.MaxGradNorm : null,
    };

    /// <summary>The dtype of the spec's precision; QLoRA keeps the projections' bases in NF4.</summary>
    public static LlamaModelOptions ModelOptions(RunSpec spec) => new()
    {
        DType = spec.Train.Precision == ComputePrecision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32,
        RequiresGrad = true,
        ProjectionBase = spec.Method == FineTuneMethod.Qlora ? ProjectionBase.Nf4 : ProjectionBase.Dense,
    };

    /// <summary>The adapters LoRA and QLoRA train; null for full fine-tuning.</summary>
    public static LoraConfig? Lora(RunSpec spec) =>
        spec.Method == FineTuneMethod.Full ? null : new LoraConfig(spec.Lora.R, spec.Lora.Alpha, spec.Lora.Dropout, spec.Lora.Targets);

    /// <summary>What the run trains and on which base, as its checkpoints record it for `rt export`.</summary>
    public static CheckpointModel CheckpointModel(RunSpec spec) => Lora(spec) is { } lora
        ? Training.Checkpoints.CheckpointModel.Adapter(lora, spec.Model, quantizedBase: spec.Method == FineTuneMethod.Qlora)
        : Training.Checkpoints.CheckpointModel.Full(spec.Model);

    /// <summary>
    /// Each pipeline stage's slice: <see cref="PipelineSplit"/> with the memory planner's cost of each stage
    /// (<see cref="RunMemoryPlan.LayerCounts"/>), so the layers go where `rt plan` says they go.
    /// </summary>
    public static IReadOnlyList<LlamaSliceSpec> Stages(RunSpec spec, LlamaConfig config) =>
        spec.Parallel.Pipeline == 1 ? [LlamaSliceSpec.Whole(config)] : PipelineSplit.Slices(RunMemoryPlan.LayerCounts(spec, config));

    /// <summary>
    /// What worker (d, p, t) holds: its stage's layers (<paramref name="stage"/>, one of <see cref="Stages"/>), as
    /// tensor-parallel shard <paramref name="tensorRank"/> of run.parallel.tensor, the vocabulary split too with
    /// run.parallel.vocab-parallel. Without tensor parallelism, the stage as it is.
    /// </summary>
    public static LlamaSliceSpec WorkerSlice(RunSpec spec, LlamaSliceSpec stage, int tensorRank) =>
        spec.Parallel.Tensor == 1 ? stage : stage.WithTensorParallel(tensorRank, spec.Parallel.Tensor, spec.Parallel.VocabParallel);

    /// <summary>
    /// SHA-256 of what decides the numbers a run trains to (model, method, adapters, data, training settings), not of
    /// where it runs or how it is laid out: a checkpoint records it, and any layout of the same training may resume it.
    /// </summary>
    public static string TrainingSha256(RunSpec spec)
    {
        var neutral = spec with
        {
            Name = "run",
            Parallel = new ParallelSpec(1, 1, 1, PipelineSchedule.OneFOneB),
            Train = spec.Train with { GradAccum = spec.Train.GradAccum * spec.Parallel.Data },
            Checkpoint = new CheckpointSpec(1, 0),
            Log = new LogSpec(1, false),
            Output = "/",
            Admission = AdmissionSpec.Default,
        };
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(RunSpecHocon.Write(neutral))));
    }
}
