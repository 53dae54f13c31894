using Runtime.Cluster.Sharding;
using Runtime.Cluster.Workers;
using Runtime.Training.Metrics;

namespace Runtime.Cluster.Driving;

/// <summary>One worker's figures for one step, for diagnostics (live tensors, where the time went).</summary>
public sealed record WorkerStepStats(WorkerId Worker, long LiveTensors, long MemoryBytes, StepTimings Timings);

/// <summary>Every worker's figures of a step (published with the run's progress, for diagnostics and tests).</summary>
public sealed record StepDetails(string RunId, int Attempt, long Step, IReadOnlyList<WorkerStepStats> Workers) : IRunProgress;

/// <summary>
/// The StepDone replies of one step, until every worker has answered; then the step's figures: the mean loss over the
/// step's labelled tokens (the last stages' loss sums over every replica, divided by the count the driver announced),
/// the norm and learning rate (every worker computed the same), and token positions per second.
/// </summary>
public sealed class StepTally(long step, long announcedLabelledTokens, IReadOnlyCollection<WorkerId> workers, DateTime started)
{
    readonly Dictionary<WorkerId, StepDone> _done = new();

    public long Step { get; } = step;

    public long AnnouncedLabelledTokens { get; } = announcedLabelledTokens;

    public DateTime Started { get; } = started;

    public bool IsComplete => _done.Count == workers.Count;

    /// <summary>Records a reply; false for one not expected (another step, an unknown worker, a repeat).</summary>
    public bool Add(StepDone done) => done.Step == Step && workers.Contains(done.Worker) && _done.TryAdd(done.Worker, done);

    /// <summary>The step's figures once complete; throws when the last stages counted other labels than announced.</summary>
    public StepMetrics Result(DateTime now)
    {
        // Tensor-parallel ranks of a stage all see the same micro-batches: count each replica once (rank 0).
        var lastStages = _done.Values.Where(d => d.Worker.Tensor == 0 && d.LabelledTokens > 0).ToList();
        long labelled = lastStages.Sum(d => d.LabelledTokens);
        if (labelled != AnnouncedLabelledTokens)
            throw new InvalidOperationException(
                $"step {Step}: the last stages counted {labelled} labelled tokens, the data announced {AnnouncedLabelledTokens}");
        double loss = lastStages.Sum(d => d.LossSum) / labelled;
        var any = _done.Values.First();
        long inputTokens = _done.Values.Where(d => d.Worker.Tensor == 0).Sum(d => d.InputTokens);
        double seconds = Math.Max((now - Started).TotalSeconds, 1e-9);
        long memory = _done.Values.Max(d => d.MemoryBytes);
        return new StepMetrics(Step, loss, any.GradNorm, any.LearningRate, labelled, inputTokens / seconds, seconds, memory);
    }

    /// <summary>The memory each worker measured in the step (those asked to), in worker order.</summary>
    public IReadOnlyList<(WorkerId Worker, WorkerMemoryReading Reading)> Memory() =>
        _done.Values.Where(d => d.Memory is not null).OrderBy(d => d.Worker.Data).ThenBy(d => d.Worker.Pipeline).ThenBy(d => d.Worker.Tensor)
            .Select(d => (d.Worker, d.Memory!)).ToList();

    public IReadOnlyList<WorkerStepStats> Details() =>
        _done.Values.OrderBy(d => d.Worker.Data).ThenBy(d => d.Worker.Pipeline).ThenBy(d => d.Worker.Tensor)
            .Select(d => new WorkerStepStats(d.Worker, d.LiveTensors, d.MemoryBytes, d.Timings)).ToList();
}
