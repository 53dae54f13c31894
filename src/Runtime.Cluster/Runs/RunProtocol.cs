using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Runs;

// The run protocol: what is said to a RunCoordinator, what it answers, and what it writes to its journal.
// Every type here goes through RunProtocolSerializer (bound in reference.conf), by a stable manifest name.

/// <summary>Anything of the run protocol (serialized by <see cref="RunProtocolSerializer"/>).</summary>
public interface IRunProtocol;

/// <summary>A message for the coordinator of run <see cref="RunId"/> (sharding routes on it).</summary>
public interface IRunCommand : IRunProtocol
{
    string RunId { get; }
}

/// <summary>
/// A command from whatever drives one attempt of a run. Messages from an older attempt than the coordinator's
/// current one change nothing and are answered with <see cref="StaleAttempt"/>.
/// </summary>
public interface IAttemptCommand : IRunCommand
{
    int Attempt { get; }
}

/// <summary>A fact about a run, persisted in its coordinator's journal.</summary>
public interface IRunEvent : IRunProtocol
{
    string RunId { get; }
}

/// <summary>A coordinator's answer.</summary>
public interface IRunReply : IRunProtocol
{
    string RunId { get; }
}

// ---- Commands from users (rt, the command host) ----------------------------------------------------------------

/// <summary>Validate and accept a run. Answered with <see cref="RunAccepted"/> or <see cref="RunRejected"/>.</summary>
/// <param name="ResumeFrom">
/// A committed checkpoint folder to start from instead of step 0, written by any layout (another run's, or an earlier
/// run of this spec); "latest" takes the newest committed checkpoint in the spec's output folder. Refused, under the
/// key "resume", when it is not a committed checkpoint or was trained with another seed.
/// </param>
public sealed record SubmitRun(string RunId, RunSpec Spec, string? ResumeFrom = null) : IRunCommand;

/// <summary>Answered with <see cref="RunStatus"/> (phase <see cref="RunPhase.None"/> when no such run was submitted).</summary>
public sealed record GetRunStatus(string RunId) : IRunCommand;

/// <summary>Stop a run that has not finished. Answered with <see cref="RunCommandAccepted"/> or <see cref="RunCommandRejected"/>.</summary>
/// <param name="Checkpoint">
/// Keep the work done so far (what Ctrl+C in `rt finetune` asks): the step in flight finishes, a checkpoint of it is
/// committed, and only then is the run recorded as stopped, so a later submission resuming from "latest" continues
/// exactly there. Accepted at once; the status says Stopped when it has happened. A run that is not training (its
/// workers are still being placed) stops at once, as does one asked again without the flag. Absent in messages of
/// older senders: false.
/// </param>
public sealed record StopRun(string RunId, string Reason, bool Checkpoint = false) : IRunCommand;

// ---- Commands from the run's driver ----------------------------------------------------------------------------

/// <summary>Every worker of the attempt is placed and loaded; training may begin (persists <see cref="RunStarted"/>).</summary>
public sealed record WorkersReady(string RunId, int Attempt) : IAttemptCommand;

/// <summary>Optimizer step <see cref="Step"/> (1-based) is done (persists <see cref="StepCompleted"/>). Steps arrive in order;
/// one already recorded is acknowledged again without a second event.</summary>
public sealed record RecordStep(
    string RunId, int Attempt, long Step, double Loss, long Tokens, double LearningRate, double GradNorm, double Seconds) : IAttemptCommand;

/// <summary>Every worker has written and verified its part of checkpoint <see cref="Step"/>; the manifest is in place
/// (persists <see cref="CheckpointCommitted"/>). <see cref="DataPosition"/> is the global sample position to resume at.</summary>
public sealed record CommitCheckpoint(string RunId, int Attempt, long Step, string ManifestPath, long DataPosition) : IAttemptCommand;

/// <summary>The attempt cannot go on (a worker's node was lost, say): start attempt + 1 from the last committed checkpoint
/// (persists <see cref="AttemptStarted"/>).</summary>
public sealed record RestartAttempt(string RunId, int Attempt, string Reason) : IAttemptCommand;

/// <summary>Training finished at <see cref="Step"/>, which must be the last recorded step (persists <see cref="RunCompleted"/>).</summary>
public sealed record CompleteRun(string RunId, int Attempt, long Step) : IAttemptCommand;

/// <summary>The run cannot succeed (persists <see cref="RunFailed"/>).</summary>
public sealed record FailRun(string RunId, int Attempt, string Reason) : IAttemptCommand;

/// <summary>
/// The attempt stopped as <see cref="StopRun.Checkpoint"/> asked, after checkpoint <see cref="Step"/> was committed and
/// recorded (persists <see cref="RunStopped"/>).
/// </summary>
public sealed record AttemptStopped(string RunId, int Attempt, long Step, string Reason) : IAttemptCommand;

// ---- Replies ---------------------------------------------------------------------------------------------------

public sealed record RunAccepted(string RunId) : IRunReply;

/// <summary>The spec (or the run id) was refused; nothing was persisted. Each problem names its key.</summary>
public sealed record RunRejected(string RunId, IReadOnlyList<SpecProblem> Problems) : IRunReply
{
    public string Reason => RunSpecException.Describe(RunId, Problems);
}

public sealed record RunCommandAccepted(string RunId, int Attempt) : IRunReply;

public sealed record RunCommandRejected(string RunId, string Reason) : IRunReply;

/// <summary>The command came from <see cref="Attempt"/>, which <see cref="CurrentAttempt"/> has replaced; nothing changed.</summary>
public sealed record StaleAttempt(string RunId, int Attempt, int CurrentAttempt) : IRunReply;

public enum RunPhase
{
    /// <summary>No run with this id was submitted.</summary>
    None,

    /// <summary>Accepted; the current attempt is placing and loading its workers.</summary>
    Starting,

    /// <summary>The current attempt's workers are training.</summary>
    Running,

    Completed,
    Failed,
    Stopped,
}

/// <summary>The checkpoint a restart resumes from.</summary>
public sealed record CommittedCheckpoint(long Step, string ManifestPath, long DataPosition);

/// <summary>A run as its journal tells it.</summary>
/// <param name="LastStep">The last optimizer step recorded in the current attempt's history (a restart rewinds it to
/// the checkpoint it resumes from).</param>
/// <param name="TokensProcessed">Tokens of every recorded step, redone steps included.</param>
/// <param name="Reason">Why the run failed or was stopped, or why the current attempt started.</param>
public sealed record RunStatus(
    string RunId,
    RunPhase Phase,
    int Attempt,
    long LastStep,
    double? LastLoss,
    long TokensProcessed,
    CommittedCheckpoint? LastCheckpoint,
    string? Reason,
    RunSpec? Spec) : IRunReply
{
    public bool IsFinished => Phase is RunPhase.Completed or RunPhase.Failed or RunPhase.Stopped;
}

// ---- Events ----------------------------------------------------------------------------------------------------

/// <summary>
/// The run was accepted with this spec (its canonical form is what is stored); attempt 1 begins, after
/// <see cref="ResumedFrom"/>'s step when the run starts from a checkpoint (absent in events written before resuming
/// existed: they started at step 0).
/// </summary>
public sealed record RunSubmitted(string RunId, RunSpec Spec, DateTimeOffset At, CommittedCheckpoint? ResumedFrom = null) : IRunEvent;

public sealed record RunStarted(string RunId, int Attempt) : IRunEvent;

public sealed record StepCompleted(
    string RunId, int Attempt, long Step, double Loss, long Tokens, double LearningRate, double GradNorm, double Seconds) : IRunEvent;

public sealed record CheckpointCommitted(string RunId, int Attempt, long Step, string ManifestPath, long DataPosition) : IRunEvent;

/// <summary>Attempt <see cref="Attempt"/> begins from step <see cref="ResumeStep"/> (0, or the last committed checkpoint's).</summary>
public sealed record AttemptStarted(string RunId, int Attempt, string Reason, long ResumeStep) : IRunEvent;

public sealed record RunCompleted(string RunId, int Attempt, long Step) : IRunEvent;

public sealed record RunFailed(string RunId, int Attempt, string Reason) : IRunEvent;

public sealed record RunStopped(string RunId, string Reason) : IRunEvent;
