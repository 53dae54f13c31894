using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;

namespace Runtime.Training.Engine;

/// <summary>Settings of a <see cref="TrainingLoop"/> run.</summary>
public sealed record TrainingLoopOptions
{
    /// <summary>Micro-batch size and gradient accumulation; one worker, so data-parallel must be 1.</summary>
    public required BatchLayout Layout { get; init; }

    public required LrSchedule Schedule { get; init; }

    public OptimizerStepOptions Optimizer { get; init; } = new();

    /// <summary>Run seed of the counter-based training randomness (dropout): step k's micro-batch j draws from (seed, k, j).</summary>
    public long Seed { get; init; }

    /// <summary>Run until this many optimizer steps are complete (counting those done before a resume).</summary>
    public required long MaxSteps { get; init; }

    /// <summary>Gradient checkpointing: recompute each decoder layer in the backward.</summary>
    public bool Recompute { get; init; }

    /// <summary>Where checkpoints go (as <c>checkpoint-&lt;step&gt;</c> folders); needed when <see cref="CheckpointEvery"/> &gt; 0.</summary>
    public string? OutputFolder { get; init; }

    /// <summary>Save after every this many completed steps; 0 never.</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Committed checkpoints to keep, the newest; 0 keeps all.</summary>
    public int KeepLast { get; init; }

    /// <summary>A committed checkpoint folder to continue from: parameters, optimizer state, step, data position.</summary>
    public string? ResumeFrom { get; init; }

    /// <summary>SHA-256 of the run specification, recorded in checkpoints and checked on resume when both have one.</summary>
    public string? RunSpecSha256 { get; init; }

    /// <summary>
    /// What is trained and on which base, written into every checkpoint (adapter_config.json or config.json, and
    /// state.json's "model") so that <c>rt export</c> can turn any checkpoint into a PEFT adapter or a model folder.
    /// </summary>
    public CheckpointModel? Model { get; init; }

    /// <summary>
    /// Measure each step's memory by category (<see cref="StepMemory"/>): tensor accounting, plus two allocator
    /// readings per micro-batch for the saved activations where glibc's mallinfo2 is available. Cheap; on by default.
    /// </summary>
    public bool MeasureMemory { get; init; } = true;

    /// <summary>Also sample the activation peak from a background thread (costs a core during the step; for measurements).</summary>
    public bool WatchActivationPeak { get; init; }

    /// <summary>Where each step's metrics go (TensorBoard, metrics.jsonl); the loop does not dispose them.</summary>
    public IReadOnlyList<IMetricsSink> Metrics { get; init; } = [];

    internal void Validate()
    {
        if (Layout.DataParallel != 1)
            throw new ArgumentException($"the single-worker loop runs data-parallel 1, not {Layout.DataParallel} (the cluster runtime runs replicas)");
        ArgumentOutOfRangeException.ThrowIfNegative(MaxSteps);
        ArgumentOutOfRangeException.ThrowIfNegative(CheckpointEvery);
        ArgumentOutOfRangeException.ThrowIfNegative(KeepLast);
        if (CheckpointEvery > 0 && string.IsNullOrEmpty(OutputFolder))
            throw new ArgumentException("checkpoints every N steps need an output folder");
    }
}

/// <summary>
/// One completed step: <see cref="Step"/> steps are done after it (1 for the first). <see cref="Loss"/> is the mean
/// next-token loss over the step's labelled tokens; <see cref="InputTokens"/> counts every position of the collated
/// micro-batches, padding included (what the model computed on). <see cref="Memory"/>: the step's bytes by category,
/// when <see cref="TrainingLoopOptions.MeasureMemory"/>.
/// </summary>
public sealed record StepRecord(long Step, double Loss, double GradNorm, double LearningRate, long LabelledTokens, long InputTokens,
    TimeSpan Elapsed, StepMemory? Memory = null);
