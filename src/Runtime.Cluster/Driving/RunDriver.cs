using Akka.Actor;
using Akka.Event;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Runs;
using Runtime.Cluster.Sharding;
using Runtime.Cluster.Workers;
using Runtime.Training.Checkpoints;

namespace Runtime.Cluster.Driving;

/// <summary>Drives runs with workers: the <see cref="IRunDriverFactory"/> a node uses to train (see <see cref="RunDriver"/>).</summary>
public sealed class TrainingRunDriver : IRunDriverFactory
{
    public static TrainingRunDriver Instance { get; } = new();

    public Props DriverProps(RunDriverContext context) => RunDriver.Props(context);
}

/// <summary>
/// Drives one attempt of a run; a child of the run's coordinator. In order:
/// <list type="number">
/// <item>works the attempt out off its thread (<see cref="RunPlan"/>: data, steps, stage slices, resume point);</item>
/// <item>places the P x T x D workers by sending each its <see cref="InitializeWorker"/> through the worker shard
/// region (the slot-aware allocation picks the nodes; with no free slot the attempt waits, and says so every
/// runtime.driver.capacity-notice-after, sending the workers not yet ready their InitializeWorker again), and waits
/// for every worker and every replica's data loader to be ready, watching each worker's trainer;</item>
/// <item>tells every worker where the others live (<see cref="ConnectWorkers"/>), then the coordinator WorkersReady;</item>
/// <item>runs the steps in order: the loaders get <see cref="LoadStep"/> ahead of need, every worker a
/// <see cref="TrainStep"/>; when all have answered, the coordinator records the step, metrics and progress go out;</item>
/// <item>every checkpoint.every-steps steps and after the last: the data-parallel replica 0 workers write their shards,
/// the driver commits them, the coordinator records the commit, then retention runs;</item>
/// <item>after the last step it exports the adapter (or the model) from the final checkpoint, releases the workers and
/// completes the run.</item>
/// </list>
/// A lost worker (its trainer or node gone) or a step that timed out aborts the attempt (every worker's inbox is
/// cancelled) and asks the coordinator for the next attempt, which resumes from the last committed checkpoint; any
/// other failure fails the run.
/// </summary>
public sealed partial class RunDriver : ReceiveActor, IWithTimers
{
    sealed record PlanFailed(Exception Cause);

    sealed record Exported(string Folder);

    sealed record ExportFailed(Exception Cause);

    sealed class CapacityTick
    {
        public static readonly CapacityTick Instance = new();
    }

    readonly RunDriverContext _context;
    readonly DriverSettings _settings;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly RunProgressPublisher _progress;
    readonly Queue<(string What, Action? Then)> _awaitingCoordinator = new();
    readonly Dictionary<WorkerId, WorkerReady> _ready = new();
    readonly Dictionary<IActorRef, WorkerId> _trainers = new();
    readonly Dictionary<int, IActorRef> _loaders = new();
    readonly HashSet<WorkerId> _connected = new();
    readonly List<CheckpointFile> _shardFiles = new();
    readonly HashSet<WorkerId> _shardsWritten = new();
    Task<RunPlan>? _planning;
    RunPlan? _plan;
    bool _placed;
    RunMetrics? _metrics;
    StepTally? _tally;
    long _loadedThrough;
    long _checkpointStep;
    string? _checkpointFolder;
    DateTime _placingSince;
    bool _restartRequested;
    Exported? _completed;
    string? _stopRequested;

    public RunDriver(RunDriverContext context)
    {
        _context = context;
        _settings = RuntimeSettings.From(Context.System.Settings.Config).Driver;
        _progress = new RunProgressPublisher(Context.System, context.RunId);
        Become(Preparing);
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(RunDriverContext context) => Akka.Actor.Props.Create(() => new RunDriver(context));

    string RunId => _context.RunId;

    int Attempt => _context.Attempt;

    RunPlan Plan => _plan ?? throw new InvalidOperationException("the run plan is not ready");

    IActorRef Region => RunWorkers.Get(Context.System).RequireRegion();

    protected override void PreStart()
    {
        var context = _context;
        _planning = Task.Run(() => RunPlan.Create(context));
        _planning.PipeTo(Self, success: plan => plan, failure: e => new PlanFailed(e));
    }

    // ---- 1. Working the attempt out --------------------------------------------------------------------------

    void Preparing()
    {
        Receive<RunPlan>(plan =>
        {
            _plan = plan;
            if (plan.ResumeStep == plan.TotalSteps)
            {
                // Every step is done and checkpointed (an earlier attempt stopped before completing the run): export.
                _checkpointFolder = plan.ResumeFolder;
                ToCoordinator(new WorkersReady(RunId, Attempt), "workers ready", Finish);
                Become(Finishing);
                return;
            }
            PlaceWorkers();
        });
        Receive<PlanFailed>(f => FailRun($"the run cannot start: {Describe(f.Cause)}"));
        Common();
    }

    // ---- 2. Placing and loading the workers ------------------------------------------------------------------

    void PlaceWorkers()
    {
        var plan = Plan;
        _placed = true;
        _placingSince = DateTime.UtcNow;
        foreach (var worker in plan.Workers) Initialize(worker);
        Timers.StartPeriodicTimer(nameof(CapacityTick), CapacityTick.Instance, _settings.CapacityNoticeAfter);
        _progress.Publish(new PlacingWorkers(RunId, Attempt, 0, plan.Workers.Count));
        Become(Placing);
    }

    void Initialize(WorkerId worker)
    {
        var plan = Plan;
        Region.Tell(new InitializeWorker(worker, Attempt, plan.Spec, WorkerSlice.Of(plan.Stages[worker.Pipeline]), plan.TotalSteps, plan.ResumeFolder));
    }

    void Placing()
    {
        Receive<WorkerReady>(ready =>
        {
            if (ready.Attempt != Attempt || !_ready.TryAdd(ready.Worker, ready)) return;
            _trainers[Sender] = ready.Worker;
            Context.Watch(Sender);
            _progress.Publish(new PlacingWorkers(RunId, Attempt, _ready.Count, Plan.Workers.Count));
            ConnectWhenReady();
        });
        Receive<LoaderReady>(ready =>
        {
            if (ready.Attempt != Attempt || _loaders.ContainsKey(ready.Replica)) return;
            _loaders[ready.Replica] = Sender;
            Context.Watch(Sender);
            ConnectWhenReady();
        });
        Receive<CapacityTick>(_ =>
        {
            var waited = (DateTime.UtcNow - _placingSince).TotalSeconds;
            _log.Warning("run {0} attempt {1}: {2} of {3} workers ready after {4:F0} s; waiting for capacity",
                RunId, Attempt, _ready.Count, Plan.Workers.Count, waited);
            _progress.Publish(new WaitingForCapacity(RunId, Attempt, _ready.Count, Plan.Workers.Count, waited));
            // Delivery is at most once: right after a node dies, this node's region may still route a worker's shard
            // to the dead node's region and the message is gone. Asking again reaches the shard's new home (a worker
            // that did get it answers again without reloading).
            foreach (var worker in Plan.Workers.Where(w => !_ready.ContainsKey(w))) Initialize(worker);
        });
        Common();
    }

    void ConnectWhenReady()
    {
        var plan = Plan;
        if (_ready.Count < plan.Workers.Count || _loaders.Count < plan.Spec.Parallel.Data) return;
        Timers.Cancel(nameof(CapacityTick));
        var placements = plan.Workers.Select(w => new WorkerPlacement(w, _ready[w].Node)).ToList();
        foreach (var worker in plan.Workers) Region.Tell(new ConnectWorkers(worker, Attempt, placements));
        Become(Connecting);
    }

    void Connecting()
    {
        Receive<WorkerConnected>(c =>
        {
            if (c.Attempt != Attempt || !_connected.Add(c.Worker) || _connected.Count < Plan.Workers.Count) return;
            ToCoordinator(new WorkersReady(RunId, Attempt), "workers ready", StartTraining);
        });
        Common();
    }

    // ---- 3. Steps ------------------------------------------------------------------------------------------------

    void StartTraining()
    {
        var plan = Plan;
        _metrics = new RunMetrics(plan.Spec, plan.TotalSteps);
        _progress.Publish(new TrainingStarted(RunId, Attempt, plan.ResumeStep, plan.TotalSteps, plan.Workers.Count));
        _loadedThrough = plan.ResumeStep;
        Become(Training);
        StartStep(plan.ResumeStep + 1);
    }

    void StartStep(long step)
    {
        var plan = Plan;
        long labelled = plan.Data.LabelledTokens(plan.Step(step));
        if (labelled == 0)
        {
            FailRun($"step {step} (samples from position {plan.PositionOf(step)}) has no labelled tokens: nothing to learn from");
            return;
        }
        // Data for this step and the next ones goes out now, so the loaders are never what stage 0 waits for.
        for (long s = _loadedThrough + 1; s <= Math.Min(plan.TotalSteps, step + _settings.PrefetchSteps); s++)
        {
            foreach (var loader in _loaders.Values) loader.Tell(new LoadStep(RunId, Attempt, s, plan.PositionOf(s)));
            _loadedThrough = s;
        }
        _tally = new StepTally(step, labelled, plan.Workers, DateTime.UtcNow);
        // Memory by category: after the attempt's first step (to show it early) and after the run's last.
        bool measure = step == plan.ResumeStep + 1 || step == plan.TotalSteps;
        foreach (var worker in plan.Workers) Region.Tell(new TrainStep(worker, Attempt, step, labelled, measure));
    }

    void Training()
    {
        Receive<StepDone>(done =>
        {
            if (done.Attempt != Attempt || _tally is null || !_tally.Add(done) || !_tally.IsComplete) return;
            StepCompleted(_tally);
        });
        // This driver had not aborted the attempt (it would be stopping): something else cancelled the worker's waits.
        Receive<StepAborted>(a => { if (a.Attempt == Attempt) LoseAttempt($"worker {a.Worker} dropped step {a.Step}: {a.Reason}"); });
        Common();
    }

    void StepCompleted(StepTally tally)
    {
        var plan = Plan;
        Runtime.Training.Metrics.StepMetrics m;
        try
        {
            m = tally.Result(DateTime.UtcNow);
        }
        catch (InvalidOperationException e)
        {
            FailRun(e.Message);
            return;
        }
        long step = tally.Step;
        _tally = null;
        ToCoordinator(new RecordStep(RunId, Attempt, step, m.Loss, m.LabelledTokens, m.LearningRate, m.GradNorm, m.Seconds), $"step {step}");
        _metrics!.Record(m);
        _progress.Publish(new StepProgress(RunId, Attempt, step, plan.TotalSteps, m.Loss, m.LearningRate, m.GradNorm, m.LabelledTokens,
            m.TokensPerSecond, m.Seconds, _metrics.EtaSeconds(step)));
        _progress.Publish(new StepDetails(RunId, Attempt, step, tally.Details()));
        if (plan.PlannedMemory is { } planned)
            foreach (var (worker, reading) in tally.Memory())
                _progress.Publish(new WorkerMemory(RunId, Attempt, step, worker, reading.Measured, planned[worker.Pipeline], reading.WorkersInProcess));

        // A stop that keeps the work (CheckpointAndStop) checkpoints the step just done, whatever the schedule.
        if (step % plan.Spec.Checkpoint.EverySteps == 0 || step == plan.TotalSteps || _stopRequested is not null) BeginCheckpoint(step);
        else StartStep(step + 1);
    }

    // ---- Failures and the coordinator's replies ------------------------------------------------------------------

    /// <summary>What every state handles: lost workers, failures, and the coordinator's answers to this driver.</summary>
    void Common()
    {
        Receive<Terminated>(t =>
        {
            if (_trainers.TryGetValue(t.ActorRef, out var worker)) LoseAttempt($"worker {worker} was lost (its node left or it stopped)");
            else if (_loaders.ContainsValue(t.ActorRef)) LoseAttempt("a data loader was lost (its node left or it stopped)");
        });
        Receive<LoaderFailed>(f =>
        {
            if (f.Attempt != Attempt) return;
            var reason = $"the data loader of replica {f.Replica} failed: {f.Reason}";
            if (f.Retryable) LoseAttempt(reason);
            else FailRun(reason);
        });
        Receive<WorkerFailed>(f =>
        {
            if (f.Attempt != Attempt) return;
            if (f.Retryable) LoseAttempt(f.Reason);
            else FailRun(f.Reason);
        });
        Receive<RunCommandAccepted>(_ => NextReply()?.Invoke());
        Receive<RunCommandRejected>(r =>
        {
            var what = Refused(r);
            // The coordinator and this driver disagree about the run: it cannot go on.
            AbortWorkers(r.Reason);
            ToCoordinator(new FailRun(RunId, Attempt, $"the coordinator refused {what}: {r.Reason}"), "failure");
            Become(Stopping);
        });
        Receive<StaleAttempt>(s =>
        {
            _log.Info("run {0}: attempt {1} was replaced by attempt {2}; this driver stops", RunId, s.Attempt, s.CurrentAttempt);
            _restartRequested = true; // the newer attempt owns the workers
            Context.Stop(Self);
        });
        Receive<CapacityTick>(_ => { });
        // Acted on where a step or a checkpoint ends (StepCompleted, RecordCheckpoint); a run past its last step completes.
        Receive<CheckpointAndStop>(stop => { if (stop.Attempt == Attempt) _stopRequested ??= stop.Reason; });
    }

    /// <summary>After the attempt was given up: only the coordinator's answers matter (it will stop this driver).</summary>
    void Stopping()
    {
        Receive<RunCommandAccepted>(_ => NextReply());
        Receive<RunCommandRejected>(r => Refused(r));
        Receive<StaleAttempt>(_ => Context.Stop(Self));
        ReceiveAny(_ => { });
    }

    Action? NextReply() => _awaitingCoordinator.TryDequeue(out var pending) ? pending.Then : null;

    /// <summary>Takes a refusal off the queue of awaited answers, undoes what it invalidates, and names what was refused.</summary>
    string Refused(RunCommandRejected rejection)
    {
        var what = _awaitingCoordinator.TryDequeue(out var pending) ? pending.What : "a command";
        _log.Warning("run {0}: the coordinator refused {1}: {2}", RunId, what, rejection.Reason);
        // A refused restart (the run was stopped meanwhile, say): no next attempt will take the workers over.
        if (what == "restart") _restartRequested = false;
        if (what == "completion") _completed = null;
        return what;
    }

    void ToCoordinator(IAttemptCommand command, string what, Action? then = null)
    {
        _awaitingCoordinator.Enqueue((what, then));
        _context.Coordinator.Tell(command);
    }

    /// <summary>Checkpoint <paramref name="step"/> is committed and recorded: the stop asked for can happen.</summary>
    void StopAtCheckpoint(long step, string reason)
    {
        _log.Info("run {0}: attempt {1} stops after checkpoint {2} as asked ({3})", RunId, Attempt, step, reason);
        _progress.Publish(new RunFinished(RunId, Attempt, RunPhase.Stopped, step, null, reason));
        ToCoordinator(new AttemptStopped(RunId, Attempt, step, reason), "stop");
        Become(Stopping);
    }

    void LoseAttempt(string reason)
    {
        _log.Warning("run {0}: attempt {1} stops: {2}", RunId, Attempt, reason);
        _progress.Publish(new AttemptAborted(RunId, Attempt, reason));
        AbortWorkers(reason);
        if (Attempt >= _settings.MaxAttempts)
        {
            ToCoordinator(new FailRun(RunId, Attempt, $"{reason}; giving up after {Attempt} attempts (runtime.driver.max-attempts)"), "failure");
        }
        else
        {
            _restartRequested = true;
            ToCoordinator(new RestartAttempt(RunId, Attempt, reason), "restart");
        }
        Become(Stopping);
    }

    void FailRun(string reason)
    {
        _log.Error("run {0}: attempt {1} fails the run: {2}", RunId, Attempt, reason);
        AbortWorkers(reason);
        ToCoordinator(new FailRun(RunId, Attempt, reason), "failure");
        _progress.Publish(new RunFinished(RunId, Attempt, RunPhase.Failed, _tally?.Step - 1 ?? Plan0Step(), null, reason));
        Become(Stopping);
    }

    long Plan0Step() => _plan?.ResumeStep ?? _context.ResumeStep;

    void AbortWorkers(string reason)
    {
        Timers.CancelAll();
        if (_plan is null || !_placed) return;
        foreach (var worker in _plan.Workers) Region.Tell(new AbortAttempt(worker, Attempt, reason));
    }

    void ReleaseWorkers()
    {
        if (_plan is null || !_placed) return;
        foreach (var worker in _plan.Workers) Region.Tell(new ReleaseWorker(worker, Attempt));
        RunWorkers.Get(Context.System).PublishReleased(RunId);
    }

    static string Describe(Exception e) => e is AggregateException { InnerExceptions.Count: 1 } a ? Describe(a.InnerExceptions[0]) : $"{e.GetType().Name}: {e.Message}";

    protected override void PostStop()
    {
        // Stopped by the coordinator: the run finished, failed or was stopped (release the workers and their slots),
        // or a new attempt replaces this one (it reuses the workers: leave them to it).
        if (_completed is not null)
            _progress.Publish(new RunFinished(RunId, Attempt, RunPhase.Completed, Plan.TotalSteps, _completed.Folder, null));
        else if (!_restartRequested && _plan is not null)
        {
            AbortWorkers("the run's driver stopped");
            ReleaseWorkers();
        }
        _metrics?.Dispose();
        _plan?.Dispose();
        // A plan still being worked out when the driver stopped is never delivered: close its data when it arrives.
        if (_plan is null) _planning?.ContinueWith(t => t.Result.Dispose(), TaskContinuationOptions.OnlyOnRanToCompletion);
    }
}
