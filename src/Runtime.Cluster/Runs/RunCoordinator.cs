using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Persistence;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Runs;

/// <summary>What every run coordinator of a node shares.</summary>
public sealed record RunCoordinatorSetup(RunCoordinatorSettings Settings, ISlotInventory Slots, IRunDriverFactory Driver);

/// <summary>
/// One run's durable memory, an event-sourced entity (sharded by run id, see <see cref="RunCoordinatorSharding"/>).
/// It validates a submitted spec (refusing it, persisting nothing, with every problem named by key), records the
/// run's lifecycle, steps and checkpoint commits in its journal, answers status queries, and starts one driver
/// child per attempt (<see cref="IRunDriverFactory"/>). Commands from an attempt older than the current one change
/// nothing. When it recovers a run that was still active (its node died, or it was handed off), the old attempt's
/// workers are orphans: it starts a new attempt from the last committed checkpoint.
/// </summary>
public sealed class RunCoordinator : ReceivePersistentActor
{
    public const string PersistenceIdPrefix = "run-coordinator-";

    readonly string _runId;
    readonly RunCoordinatorSetup _setup;
    readonly ILoggingAdapter _log = Context.GetLogger();
    RunState _state = RunState.Empty;
    IActorRef? _driver;
    Exception? _driverFailure;

    // A stop that waits for the driver's checkpoint (StopRun.Checkpoint); not persisted: a coordinator that restarts
    // meanwhile forgets it, and the run goes on until stopped again.
    string? _stopAfterCheckpoint;

    public static Props Props(string runId, RunCoordinatorSetup setup) =>
        Akka.Actor.Props.Create(() => new RunCoordinator(runId, setup));

    public RunCoordinator(string runId, RunCoordinatorSetup setup)
    {
        _runId = runId;
        _setup = setup;
        PersistenceId = PersistenceIdPrefix + runId;

        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is RunState snapshot) _state = snapshot;
        });
        Recover<IRunEvent>(e => _state = _state.Apply(e));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<GetRunStatus>(_ => Sender.Tell(_state.ToStatus(_runId)));
        Command<SubmitRun>(Submit);
        Command<StopRun>(Stop);
        Command<IAttemptCommand>(OnAttemptCommand);
        Command<Terminated>(OnTerminated);
        Command<SaveSnapshotSuccess>(s => DeleteSnapshots(new SnapshotSelectionCriteria(s.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "run {0}: snapshot at {1} failed; recovery replays more events", _runId, f.Metadata.SequenceNr));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => _log.Warning(f.Cause, "run {0}: deleting old snapshots failed", _runId));
        Command<ReceiveTimeout>(_ =>
        {
            if (!_state.IsActive) Context.Parent.Tell(new Passivate(PoisonPill.Instance));
        });
    }

    public override string PersistenceId { get; }

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        _driverFailure = e;
        return Directive.Stop;
    });

    void OnRecovered()
    {
        if (_state.IsActive)
            Record(new AttemptStarted(_runId, _state.Attempt + 1, "the run coordinator restarted", _state.ResumeStep), StartDriver);
        else
            PassivateWhenIdle(); // finished, or nothing was ever submitted here
    }

    void Submit(SubmitRun submit)
    {
        if (submit.RunId != _runId || !RunIds.IsValid(submit.RunId))
        {
            Sender.Tell(new RunRejected(submit.RunId, [new SpecProblem("run", RunIds.IsValid(submit.RunId)
                ? $"run \"{submit.RunId}\" was sent to the coordinator of \"{_runId}\""
                : $"run id \"{submit.RunId}\" {RunIds.Rule}")]));
            return;
        }
        if (_state.Phase != RunPhase.None)
        {
            // Submitting the same spec twice (a retry after a lost reply) is not an error; a different one is.
            if (RunSpecHocon.Write(submit.Spec) == RunSpecHocon.Write(_state.Spec!))
                Sender.Tell(new RunAccepted(_runId));
            else
                Sender.Tell(new RunRejected(_runId, [new SpecProblem("run",
                    $"run \"{_runId}\" was already submitted with another spec (it is {_state.Phase.ToString().ToLowerInvariant()}); choose another run name")]));
            return;
        }
        var problems = RunSpecValidator.Problems(submit.Spec, _setup.Slots).ToList();
        var resume = submit.ResumeFrom is null ? null : ResumeCheckpoint.Find(submit.ResumeFrom, submit.Spec, problems);
        if (problems.Count > 0)
        {
            Sender.Tell(new RunRejected(_runId, problems));
            return;
        }
        var sender = Sender;
        Record(new RunSubmitted(_runId, submit.Spec, DateTimeOffset.UtcNow, resume), () =>
        {
            Context.SetReceiveTimeout(null); // an active run's coordinator stays
            sender.Tell(new RunAccepted(_runId));
            StartDriver();
        });
    }

    void Stop(StopRun stop)
    {
        if (!_state.IsActive)
        {
            Sender.Tell(new RunCommandRejected(_runId, Inactive()));
            return;
        }
        if (stop.Checkpoint && _state.Phase == RunPhase.Running && _driver is not null)
        {
            // The driver finishes the step in flight, commits its checkpoint, then reports AttemptStopped.
            if (_stopAfterCheckpoint is null)
            {
                _stopAfterCheckpoint = stop.Reason;
                _driver.Tell(new CheckpointAndStop(_runId, _state.Attempt, stop.Reason));
            }
            Sender.Tell(new RunCommandAccepted(_runId, _state.Attempt));
            return;
        }
        var sender = Sender;
        Record(new RunStopped(_runId, stop.Reason), () =>
        {
            sender.Tell(new RunCommandAccepted(_runId, _state.Attempt));
            Finished();
        });
    }

    void OnAttemptCommand(IAttemptCommand command)
    {
        if (_state.Phase == RunPhase.None || command.RunId != _runId)
        {
            Sender.Tell(new RunCommandRejected(command.RunId, $"no run \"{command.RunId}\" was submitted"));
            return;
        }
        if (command.Attempt < _state.Attempt)
        {
            Sender.Tell(new StaleAttempt(_runId, command.Attempt, _state.Attempt));
            return;
        }
        if (command.Attempt > _state.Attempt)
        {
            Reject($"attempt {command.Attempt} has not started (the current attempt is {_state.Attempt})");
            return;
        }
        if (!_state.IsActive)
        {
            Reject(Inactive());
            return;
        }
        switch (command)
        {
            case WorkersReady:
                if (_state.Phase == RunPhase.Running) Accept();
                else Record(new RunStarted(_runId, _state.Attempt), Accept);
                break;
            case RecordStep s:
                OnRecordStep(s);
                break;
            case CommitCheckpoint c:
                OnCommitCheckpoint(c);
                break;
            case RestartAttempt r when _stopAfterCheckpoint is { } reason:
                // The attempt was lost before its checkpoint: stop at the last committed one instead of going on. The
                // refusal tells the driver that no new attempt takes its workers (so it releases them).
                Reject($"the run is stopping ({reason})");
                Record(new RunStopped(_runId, $"{reason} (at checkpoint {_state.ResumeStep}: {r.Reason})"), Finished);
                break;
            case RestartAttempt r:
                Record(new AttemptStarted(_runId, _state.Attempt + 1, r.Reason, _state.ResumeStep), Then(StartDriver));
                break;
            case AttemptStopped stopped:
                Record(new RunStopped(_runId, stopped.Reason), Then(Finished));
                break;
            case CompleteRun c:
                if (_state.Phase != RunPhase.Running) Reject("the run has not started training");
                else if (c.Step != _state.LastStep) Reject($"completion at step {c.Step}, but the last recorded step is {_state.LastStep}");
                else Record(new RunCompleted(_runId, _state.Attempt, c.Step), Then(Finished));
                break;
            case FailRun f:
                Record(new RunFailed(_runId, _state.Attempt, f.Reason), Then(Finished));
                break;
            default:
                Unhandled(command);
                break;
        }
    }

    void OnRecordStep(RecordStep s)
    {
        if (_state.Phase != RunPhase.Running) Reject("the attempt's workers are not ready (no WorkersReady yet)");
        else if (s.Step <= _state.LastStep) Accept(); // a retried report of a step already recorded
        else if (s.Step != _state.LastStep + 1) Reject($"step {s.Step} does not follow the last recorded step {_state.LastStep}");
        else if (s.Tokens < 0 || !double.IsFinite(s.Seconds) || s.Seconds < 0) Reject($"step {s.Step}: tokens and seconds must be >= 0");
        else Record(new StepCompleted(_runId, s.Attempt, s.Step, s.Loss, s.Tokens, s.LearningRate, s.GradNorm, s.Seconds), Accept);
    }

    void OnCommitCheckpoint(CommitCheckpoint c)
    {
        var last = _state.LastCheckpoint;
        if (_state.Phase != RunPhase.Running) Reject("the attempt's workers are not ready (no WorkersReady yet)");
        else if (last is not null && c.Step == last.Step && c.ManifestPath == last.ManifestPath) Accept(); // retried commit
        else if (c.Step < 1 || c.Step > _state.LastStep) Reject($"checkpoint at step {c.Step}, but the last recorded step is {_state.LastStep}");
        else if (last is not null && c.Step <= last.Step) Reject($"checkpoint at step {c.Step} is not after the last committed one (step {last.Step})");
        else if (string.IsNullOrWhiteSpace(c.ManifestPath)) Reject("a checkpoint commit needs its manifest path");
        else if (c.DataPosition < 0) Reject($"data position {c.DataPosition} is negative");
        else Record(new CheckpointCommitted(_runId, c.Attempt, c.Step, c.ManifestPath, c.DataPosition), Accept);
    }

    /// <summary>Persists <paramref name="e"/>, folds it into the state, then runs <paramref name="after"/> (with the
    /// command's sender still current, as Akka restores it for persist handlers).</summary>
    void Record(IRunEvent e, Action after)
    {
        Persist(e, persisted =>
        {
            _state = _state.Apply(persisted);
            after();
            if (LastSequenceNr % _setup.Settings.SnapshotEvery == 0) SaveSnapshot(_state);
        });
    }

    Action Then(Action action) => () =>
    {
        Accept();
        action();
    };

    void Accept() => Sender.Tell(new RunCommandAccepted(_runId, _state.Attempt));

    void Reject(string reason) => Sender.Tell(new RunCommandRejected(_runId, reason));

    string Inactive() => _state.Phase == RunPhase.None
        ? $"no run \"{_runId}\" was submitted"
        : $"run \"{_runId}\" is {_state.Phase.ToString().ToLowerInvariant()}";

    void StartDriver()
    {
        StopDriver();
        var props = _setup.Driver.DriverProps(
            new RunDriverContext(_runId, _state.Spec!, _state.Attempt, _state.ResumeStep, _state.LastCheckpoint, Self));
        if (props is null) return;
        _driverFailure = null;
        _driver = Context.ActorOf(props, $"driver-{_state.Attempt}");
        Context.Watch(_driver);
    }

    void StopDriver()
    {
        if (_driver is null) return;
        Context.Unwatch(_driver);
        Context.Stop(_driver);
        _driver = null;
    }

    void OnTerminated(Terminated t)
    {
        if (!t.ActorRef.Equals(_driver)) return;
        _driver = null;
        if (!_state.IsActive) return;
        var reason = _driverFailure is { } e
            ? $"the run driver of attempt {_state.Attempt} failed: {e.GetType().Name}: {e.Message}"
            : $"the run driver of attempt {_state.Attempt} stopped before the run finished";
        Record(new RunFailed(_runId, _state.Attempt, reason), Finished);
    }

    void Finished()
    {
        _stopAfterCheckpoint = null;
        StopDriver();
        PassivateWhenIdle();
    }

    void PassivateWhenIdle()
    {
        if (_setup.Settings.PassivateInactiveAfter is { } idle) Context.SetReceiveTimeout(idle);
    }
}
