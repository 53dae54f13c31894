using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Runs;

/// <summary>
/// What a run's journal adds up to; a pure fold over its events (<see cref="Apply"/>), also saved as the
/// coordinator's snapshot. Rules about which commands may produce which events live in the coordinator; Apply
/// trusts the journal.
/// </summary>
public sealed record RunState(
    RunPhase Phase,
    RunSpec? Spec,
    int Attempt,
    long LastStep,
    double? LastLoss,
    long TokensProcessed,
    CommittedCheckpoint? LastCheckpoint,
    string? Reason) : IRunProtocol
{
    public static RunState Empty { get; } = new(RunPhase.None, null, 0, 0, null, 0, null, null);

    public bool IsActive => Phase is RunPhase.Starting or RunPhase.Running;

    public bool IsFinished => Phase is RunPhase.Completed or RunPhase.Failed or RunPhase.Stopped;

    /// <summary>The step a new attempt resumes from: the last committed checkpoint's, or 0.</summary>
    public long ResumeStep => LastCheckpoint?.Step ?? 0;

    public RunState Apply(IRunEvent e) => e switch
    {
        RunSubmitted s => Empty with
        {
            Phase = RunPhase.Starting, Spec = s.Spec, Attempt = 1, LastStep = s.ResumedFrom?.Step ?? 0, LastCheckpoint = s.ResumedFrom,
        },
        RunStarted => this with { Phase = RunPhase.Running },
        StepCompleted s => this with { LastStep = s.Step, LastLoss = s.Loss, TokensProcessed = TokensProcessed + s.Tokens },
        CheckpointCommitted c => this with { LastCheckpoint = new CommittedCheckpoint(c.Step, c.ManifestPath, c.DataPosition) },
        AttemptStarted a => this with { Phase = RunPhase.Starting, Attempt = a.Attempt, LastStep = a.ResumeStep, Reason = a.Reason },
        RunCompleted c => this with { Phase = RunPhase.Completed, LastStep = c.Step, Reason = null },
        RunFailed f => this with { Phase = RunPhase.Failed, Reason = f.Reason },
        RunStopped s => this with { Phase = RunPhase.Stopped, Reason = s.Reason },
        _ => throw new ArgumentException($"unknown run event {e.GetType().Name}", nameof(e)),
    };

    public RunStatus ToStatus(string runId) => new(runId, Phase, Attempt, LastStep, LastLoss, TokensProcessed, LastCheckpoint, Reason, Spec);
}
