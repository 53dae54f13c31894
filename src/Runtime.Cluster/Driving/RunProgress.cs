using Runtime.Cluster.Runs;

namespace Runtime.Cluster.Driving;

// What a run's driver tells whoever watches the run (a CLI's progress line, the command host's streaming replies):
// published on the cluster-wide topic RunProgressTopic.For(runId) (DistributedPubSub), so any node can follow a run
// whose driver runs elsewhere. Progress is informational: the coordinator's journal (GetRunStatus) is the truth.

/// <summary>One event of a run's progress.</summary>
public interface IRunProgress : ITrainingProtocol
{
    string RunId { get; }
    int Attempt { get; }
}

/// <summary>The attempt is placing and loading its workers (<see cref="Ready"/> of <see cref="Workers"/> so far).</summary>
public sealed record PlacingWorkers(string RunId, int Attempt, int Ready, int Workers) : IRunProgress;

/// <summary>
/// Not every worker is placed and loaded after <see cref="WaitedSeconds"/>: usually no node has a free slot, and the
/// run waits until one frees up or a node joins.
/// </summary>
public sealed record WaitingForCapacity(string RunId, int Attempt, int Ready, int Workers, double WaitedSeconds) : IRunProgress;

/// <summary>Training (re)starts after step <see cref="ResumeStep"/> (0: from the beginning).</summary>
public sealed record TrainingStarted(string RunId, int Attempt, long ResumeStep, long TotalSteps, int Workers) : IRunProgress;

/// <summary>Step <see cref="Step"/> of <see cref="TotalSteps"/> is done.</summary>
/// <param name="Loss">The step's mean token loss.</param>
/// <param name="TokensPerSecond">Token positions computed per second of the step (padding included).</param>
/// <param name="EtaSeconds">The remaining steps at the recent pace.</param>
public sealed record StepProgress(
    string RunId, int Attempt, long Step, long TotalSteps, double Loss, double LearningRate, double GradNorm, long LabelledTokens,
    double TokensPerSecond, double StepSeconds, double EtaSeconds) : IRunProgress;

public sealed record CheckpointSaved(string RunId, int Attempt, long Step, string Folder) : IRunProgress;

/// <summary>The attempt stopped (a worker or its node was lost); the next one resumes from the last committed checkpoint.</summary>
public sealed record AttemptAborted(string RunId, int Attempt, string Reason) : IRunProgress;

/// <summary>
/// The run reached a final phase. <see cref="Output"/>: the exported adapter (or full model) folder when it completed.
/// </summary>
public sealed record RunFinished(string RunId, int Attempt, RunPhase Phase, long Step, string? Output, string? Reason) : IRunProgress;

/// <summary>The DistributedPubSub topic of a run's progress.</summary>
public static class RunProgressTopic
{
    public static string For(string runId) => "runtime.run-progress." + runId;
}
