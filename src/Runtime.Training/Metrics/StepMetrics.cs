namespace Runtime.Training.Metrics;

/// <summary>
/// What a training step reports (Hugging Face Trainer's logged values, plus throughput and memory). <see cref="Step"/>
/// is the number of completed optimizer steps after this one (1 for the first), as HF's global_step.
/// <see cref="MemoryBytes"/> is the process working set; <see cref="Memory"/>, when measured, the step's bytes by
/// category (tags <c>memory/...</c>).
/// </summary>
public sealed record StepMetrics(long Step, double Loss, double GradNorm, double LearningRate, long LabelledTokens,
    double TokensPerSecond, double Seconds, long MemoryBytes, StepMemory? Memory = null)
{
    /// <summary>Names as TensorBoard shows them (HF's "train/..." tags).</summary>
    public IEnumerable<(string Tag, double Value)> Scalars()
    {
        yield return ("train/loss", Loss);
        yield return ("train/learning_rate", LearningRate);
        yield return ("train/grad_norm", GradNorm);
        yield return ("train/tokens_per_second", TokensPerSecond);
        yield return ("train/labelled_tokens", LabelledTokens);
        yield return ("train/step_seconds", Seconds);
        yield return ("system/memory_bytes", MemoryBytes);
        if (Memory is not null)
            foreach (var scalar in Memory.Scalars())
                yield return scalar;
    }
}

/// <summary>Where step metrics go. Writing must be cheap: it runs on the training thread after every step.</summary>
public interface IMetricsSink : IDisposable
{
    void Write(StepMetrics metrics);
}
