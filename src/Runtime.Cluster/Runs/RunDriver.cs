using Akka.Actor;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Runs;

/// <summary>
/// Everything a driver needs to run one attempt of a run. The driver is a child of the coordinator: it places the
/// P x T x D workers, loads <see cref="ResumeFrom"/> when there is one, and reports back to
/// <see cref="Coordinator"/> (its parent) with the <see cref="IAttemptCommand"/>s of <c>RunProtocol</c>, each carrying
/// <see cref="Attempt"/>: <see cref="WorkersReady"/>, then <see cref="RecordStep"/> per step and
/// <see cref="CommitCheckpoint"/> per checkpoint, and finally <see cref="CompleteRun"/>, <see cref="FailRun"/>,
/// <see cref="RestartAttempt"/> or (when asked by <see cref="CheckpointAndStop"/>) <see cref="AttemptStopped"/>.
/// </summary>
/// <param name="ResumeStep">The last step already done: training continues at ResumeStep + 1.</param>
public sealed record RunDriverContext(
    string RunId,
    RunSpec Spec,
    int Attempt,
    long ResumeStep,
    CommittedCheckpoint? ResumeFrom,
    IActorRef Coordinator);

/// <summary>
/// From the coordinator to its driver: a user asked to stop the run keeping its work (<see cref="StopRun.Checkpoint"/>).
/// The driver lets the step in flight finish, commits a checkpoint of it (unless one of that step is committed anyway),
/// then answers <see cref="AttemptStopped"/>; if that step was the last, the run completes instead. A driver that
/// cannot checkpoint ignores it (the coordinator's plain stop remains).
/// </summary>
public sealed record CheckpointAndStop(string RunId, int Attempt, string Reason) : IRunProtocol;

/// <summary>
/// Makes the actor that drives one attempt. The coordinator starts it after persisting RunSubmitted or
/// AttemptStarted, stops it when the attempt ends, and fails the run if it stops on its own. A driver that throws is
/// stopped, not restarted (its failure is the run's).
/// </summary>
public interface IRunDriverFactory
{
    /// <summary>Props of the attempt's driver, or null to start none (the run then waits in Starting).</summary>
    Props? DriverProps(RunDriverContext context);
}

/// <summary>No driver: runs are accepted and recorded and wait for one (this stage of the runtime, and tests).</summary>
public sealed class NoRunDriver : IRunDriverFactory
{
    public static NoRunDriver Instance { get; } = new();

    public Props? DriverProps(RunDriverContext context) => null;
}
