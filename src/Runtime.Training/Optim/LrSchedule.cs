namespace Runtime.Training.Optim;

/// <summary>The shape of the learning rate after warmup.</summary>
public enum LrScheduleKind
{
    /// <summary>HF <c>get_cosine_schedule_with_warmup</c> (num_cycles 0.5): half a cosine from the base lr to 0.</summary>
    Cosine,

    /// <summary>HF <c>get_linear_schedule_with_warmup</c>: a straight line from the base lr to 0.</summary>
    Linear,

    /// <summary>HF <c>get_constant_schedule_with_warmup</c> (with 0 warmup steps, HF's "constant").</summary>
    Constant,
}

/// <summary>
/// The learning rate as a pure function of the step, matching Hugging Face's schedule lambdas (applied by PyTorch's
/// LambdaLR as <c>base_lr * lambda(step)</c>) to the last bit.
/// </summary>
/// <remarks>
/// Step convention: <c>step</c> is the number of optimizer updates already done (HF's <c>scheduler.last_epoch</c>
/// when <c>optimizer.step()</c> runs). Update number k (1-based) uses <c>LearningRate(k - 1)</c>; so with warmup the
/// first update runs at lr 0 (HF's behaviour, kept for parity), and the base lr is first reached by update
/// <c>WarmupSteps + 1</c>. <see cref="AdamW.Step(LrSchedule)"/> applies this convention.
/// Past <see cref="TotalSteps"/> the lambdas are evaluated as HF does: linear stays at 0; cosine rises again
/// (the formula continues the cosine, clamped at 0), so a run should stop at TotalSteps.
/// </remarks>
public sealed record LrSchedule
{
    public LrSchedule(LrScheduleKind kind, double baseLearningRate, long totalSteps, long warmupSteps)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown schedule kind");
        if (!(baseLearningRate >= 0) || double.IsInfinity(baseLearningRate))
            throw new ArgumentOutOfRangeException(nameof(baseLearningRate), baseLearningRate, "the learning rate must be finite and >= 0");
        if (totalSteps < 1) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "total steps must be >= 1");
        if (warmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "warmup steps must be >= 0");
        Kind = kind;
        BaseLearningRate = baseLearningRate;
        TotalSteps = totalSteps;
        WarmupSteps = warmupSteps;
    }

    /// <summary>A schedule whose warmup is a fraction of the total, as <see cref="WarmupStepsFromRatio"/> rounds it.</summary>
    public static LrSchedule WithWarmupRatio(LrScheduleKind kind, double baseLearningRate, long totalSteps, double warmupRatio) =>
        new(kind, baseLearningRate, totalSteps, WarmupStepsFromRatio(totalSteps, warmupRatio));

    /// <summary>
    /// HF's <c>TrainingArguments.get_warmup_steps</c>: <c>ceil(total_steps * warmup_ratio)</c>, the product in double as
    /// Python computes it (so 100 * 0.03 gives 3, while 100 * 0.07 = 7.000000000000001 gives 8, as in HF).
    /// </summary>
    public static long WarmupStepsFromRatio(long totalSteps, double warmupRatio)
    {
        if (totalSteps < 0) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "total steps must be >= 0");
        if (!(warmupRatio >= 0 && warmupRatio <= 1))
            throw new ArgumentOutOfRangeException(nameof(warmupRatio), warmupRatio, "the warmup ratio must be in [0, 1]");
        return (long)Math.Ceiling(totalSteps * warmupRatio);
    }

    public LrScheduleKind Kind { get; }
    public double BaseLearningRate { get; }
    public long TotalSteps { get; }
    public long WarmupSteps { get; }

    /// <summary>The learning rate for the update that follows <paramref name="step"/> completed updates.</summary>
    public double LearningRate(long step) => BaseLearningRate * Multiplier(step);

    /// <summary>HF's lr lambda at <paramref name="step"/>, written as HF writes it so the doubles round the same.</summary>
    public double Multiplier(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (step < WarmupSteps)
            return (double)step / Math.Max(1, WarmupSteps);
        switch (Kind)
        {
            case LrScheduleKind.Cosine:
                const double numCycles = 0.5;
                double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
                return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * numCycles * 2.0 * progress)));
            case LrScheduleKind.Linear:
                return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
            default:
                return 1.0;
        }
    }
}
