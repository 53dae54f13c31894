using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Microsoft.Data.Sqlite;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;

namespace Runtime.Cluster.Tests.Runs;

/// <summary>
/// The coordinator on its own (no sharding): a local actor system with the SQLite journal in a temporary folder.
/// "Restart" means: stop the actor and start a new one with the same run id, which must rebuild its state from the
/// journal alone.
/// </summary>
public sealed class RunCoordinatorTests : Akka.TestKit.Xunit2.TestKit
{
    const string RunId = "r1";
    readonly TempDir _dir;
    readonly RunSpec _spec;

    public RunCoordinatorTests() : this(new TempDir()) { }

    RunCoordinatorTests(TempDir dir) : base(SystemConfig(dir))
    {
        _dir = dir;
        Fixtures.Model(dir["tiny"], LlamaPresets.Tiny);
        Fixtures.Data(dir["train.jsonl"]);
        _spec = RunSpecParser.Parse("run { name = \"r1\", model = \"tiny\", data.path = \"train.jsonl\" }", "r1.conf", dir.Path);
    }

    static Config SystemConfig(TempDir dir) => ConfigurationFactory.ParseString($"""
        akka.actor.provider = local
        akka.loglevel = WARNING
        akka.persistence.journal.sql.connection-string = "Data Source={dir["journal.db"]}"
        akka.persistence.snapshot-store.sql.connection-string = "Data Source={dir["snapshots.db"]}"
        """).WithFallback(RuntimeConfig.Reference);

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) _dir.Dispose();
    }

    RunCoordinatorSetup Setup(int slots = 4, IRunDriverFactory? driver = null, int snapshotEvery = 100) =>
        new(new RunCoordinatorSettings(snapshotEvery, PassivateInactiveAfter: null), new FixedSlotInventory(slots), driver ?? NoRunDriver.Instance);

    IActorRef Start(RunCoordinatorSetup? setup = null) => Sys.ActorOf(RunCoordinator.Props(RunId, setup ?? Setup()));

    void Restart(ref IActorRef coordinator, RunCoordinatorSetup? setup = null)
    {
        Watch(coordinator);
        coordinator.Tell(PoisonPill.Instance);
        ExpectTerminated(coordinator);
        coordinator = Start(setup);
    }

    T Ask<T>(IActorRef coordinator, IRunCommand command)
    {
        coordinator.Tell(command, TestActor);
        return ExpectMsg<T>(TimeSpan.FromSeconds(10));
    }

    RunStatus Status(IActorRef coordinator) => Ask<RunStatus>(coordinator, new GetRunStatus(RunId));

    void Accepted(IActorRef coordinator, IRunCommand command, int attempt = 1) =>
        Assert.Equal(new RunCommandAccepted(RunId, attempt), Ask<IRunReply>(coordinator, command));

    /// <summary>Submitted, workers ready, steps 1..3 recorded (loss 3.0, 2.5, 2.0; 100 tokens each), checkpoint at 2.</summary>
    IActorRef Trained()
    {
        var c = Start();
        Assert.Equal(new RunAccepted(RunId), Ask<IRunReply>(c, new SubmitRun(RunId, _spec)));
        Accepted(c, new WorkersReady(RunId, 1));
        Accepted(c, Step(1, 1, 3.0));
        Accepted(c, Step(1, 2, 2.5));
        Accepted(c, new CommitCheckpoint(RunId, 1, 2, "/ckpt/step-2/manifest.json", 16));
        Accepted(c, Step(1, 3, 2.0));
        return c;
    }

    static RecordStep Step(int attempt, long step, double loss) => new(RunId, attempt, step, loss, 100, 1e-3, 0.5, 0.25);

    [Fact]
    public void A_valid_spec_is_accepted_and_recorded()
    {
        var c = Start();
        Assert.Equal(new RunAccepted(RunId), Ask<IRunReply>(c, new SubmitRun(RunId, _spec)));
        var status = Status(c);
        Assert.Equal(new RunStatus(RunId, RunPhase.Starting, 1, 0, null, 0, null, null, _spec), status);
        Restart(ref c);
        Assert.Equal(_spec, Status(c).Spec); // the spec came back from the journal's canonical text
    }

    [Fact]
    public void A_bad_spec_is_refused_naming_the_key_and_nothing_is_persisted()
    {
        var c = Start(Setup(slots: 2));
        var tooDeep = _spec with { Parallel = _spec.Parallel with { Pipeline = 5 } };
        var rejected = Assert.IsType<RunRejected>(Ask<IRunReply>(c, new SubmitRun(RunId, tooDeep)));
        Assert.Equal("run.parallel.pipeline", Assert.Single(rejected.Problems, p => p.Key != "run.parallel").Key);
        Assert.Contains(rejected.Problems, p => p.Key == "run.parallel"); // 5 workers, 2 slots

        var noModel = _spec with { Model = _dir["missing"] };
        Assert.Equal("run.model", Assert.Single(Assert.IsType<RunRejected>(Ask<IRunReply>(c, new SubmitRun(RunId, noModel))).Problems).Key);

        Restart(ref c);
        Assert.Equal(RunPhase.None, Status(c).Phase);
        Assert.Equal(0, JournalRows());
    }

    [Fact]
    public void A_run_id_that_is_not_valid_is_refused()
    {
        var c = Sys.ActorOf(RunCoordinator.Props("bad id", Setup()));
        c.Tell(new SubmitRun("bad id", _spec), TestActor);
        var rejected = ExpectMsg<RunRejected>();
        Assert.Contains(RunIds.Rule, rejected.Problems.Single().Message);
    }

    [Fact]
    public void Submitting_again_is_idempotent_for_the_same_spec_and_refused_for_another()
    {
        var c = Start();
        Assert.IsType<RunAccepted>(Ask<IRunReply>(c, new SubmitRun(RunId, _spec)));
        Assert.IsType<RunAccepted>(Ask<IRunReply>(c, new SubmitRun(RunId, _spec with { })));
        var other = Assert.IsType<RunRejected>(Ask<IRunReply>(c, new SubmitRun(RunId, _spec with { Train = _spec.Train with { Lr = 1e-3 } })));
        Assert.Contains("already submitted with another spec", other.Problems.Single().Message);
        Assert.Equal(1, JournalRows());
    }

    [Fact]
    public void Lifecycle_steps_and_checkpoints_are_recorded_and_survive_a_restart()
    {
        var c = Trained();
        var status = Status(c);
        Assert.Equal(RunPhase.Running, status.Phase);
        Assert.Equal(3, status.LastStep);
        Assert.Equal(2.0, status.LastLoss);
        Assert.Equal(300, status.TokensProcessed);
        Assert.Equal(new CommittedCheckpoint(2, "/ckpt/step-2/manifest.json", 16), status.LastCheckpoint);

        Accepted(c, new CompleteRun(RunId, 1, 3));
        var done = Status(c);
        Assert.Equal(RunPhase.Completed, done.Phase);

        Restart(ref c);
        Assert.Equal(done, Status(c)); // a finished run recovers as it was: no new attempt
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, Step(1, 4, 1.0)));
    }

    [Fact]
    public void Steps_must_follow_each_other_and_repeats_are_acknowledged_without_a_second_event()
    {
        var c = Trained();
        int rows = JournalRows();
        Accepted(c, Step(1, 3, 2.0)); // a retried report
        Assert.Equal(rows, JournalRows());
        var gap = Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, Step(1, 5, 1.0)));
        Assert.Equal("step 5 does not follow the last recorded step 3", gap.Reason);
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new CommitCheckpoint(RunId, 1, 4, "/m", 0)));  // step 4 not done
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new CommitCheckpoint(RunId, 1, 1, "/m", 0)));  // before the last commit
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new CompleteRun(RunId, 1, 2)));                // not the last step
        Assert.Equal(rows, JournalRows());
    }

    [Fact]
    public void Commands_before_the_workers_are_ready_are_refused()
    {
        var c = Start();
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, Step(1, 1, 3.0)));
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new CompleteRun(RunId, 1, 0)));
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new WorkersReady(RunId, 2))); // an attempt that has not started
    }

    [Fact]
    public void Messages_from_an_older_attempt_change_nothing()
    {
        var c = Trained();
        Accepted(c, new RestartAttempt(RunId, 1, "node 10.0.0.3 was lost"), attempt: 2);
        var before = Status(c);
        Assert.Equal((RunPhase.Starting, 2, 2L), (before.Phase, before.Attempt, before.LastStep)); // resumes from checkpoint 2
        int rows = JournalRows();

        foreach (var stale in new IAttemptCommand[]
                 {
                     new WorkersReady(RunId, 1),
                     Step(1, 3, 9.9),
                     new CommitCheckpoint(RunId, 1, 3, "/ckpt/step-3/manifest.json", 24),
                     new RestartAttempt(RunId, 1, "late"),
                     new CompleteRun(RunId, 1, 3),
                     new FailRun(RunId, 1, "late failure"),
                 })
            Assert.Equal(new StaleAttempt(RunId, 1, 2), Ask<IRunReply>(c, stale));

        Assert.Equal(before, Status(c));
        Assert.Equal(rows, JournalRows());

        // The current attempt carries on from the checkpoint's step.
        Accepted(c, new WorkersReady(RunId, 2), attempt: 2);
        Accepted(c, Step(2, 3, 2.1), attempt: 2);
        Assert.Equal(2.1, Status(c).LastLoss);
    }

    [Fact]
    public void Recovering_an_active_run_starts_a_new_attempt_from_the_last_checkpoint()
    {
        var c = Trained();
        Restart(ref c);
        var status = Status(c);
        Assert.Equal(RunPhase.Starting, status.Phase);
        Assert.Equal(2, status.Attempt);
        Assert.Equal(2, status.LastStep);
        Assert.Equal("the run coordinator restarted", status.Reason);
        Assert.Equal(new CommittedCheckpoint(2, "/ckpt/step-2/manifest.json", 16), status.LastCheckpoint);
        Assert.Equal(300, status.TokensProcessed);
        Assert.Equal(new StaleAttempt(RunId, 1, 2), Ask<IRunReply>(c, Step(1, 4, 1.0)));
    }

    [Fact]
    public void Snapshots_cut_recovery_short()
    {
        var setup = Setup(snapshotEvery: 4);
        var c = Start(setup);
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));  // event 1
        Accepted(c, new WorkersReady(RunId, 1));         // 2
        for (int step = 1; step <= 6; step++)            // 3..8: snapshots after events 4 and 8
            Accepted(c, Step(1, step, 4.0 - step / 2.0));
        var before = Status(c);
        AwaitAssert(() => Assert.Equal([8L], SnapshotSequenceNumbers()), TimeSpan.FromSeconds(10)); // the older one is deleted

        // Remove the events the snapshot covers: recovery can only come from the snapshot now.
        using (var db = new SqliteConnection($"Data Source={_dir["journal.db"]}"))
        {
            db.Open();
            using var delete = db.CreateCommand();
            delete.CommandText = "DELETE FROM journal WHERE persistence_id = $id AND sequence_number <= 8";
            delete.Parameters.AddWithValue("$id", RunCoordinator.PersistenceIdPrefix + RunId);
            Assert.Equal(8, delete.ExecuteNonQuery());
        }
        Restart(ref c, setup);
        var after = Status(c);
        Assert.Equal(before with { Phase = RunPhase.Starting, Attempt = 2, LastStep = 0, Reason = "the run coordinator restarted" }, after);
        Assert.Equal(3.0 * 100 * 2, after.TokensProcessed); // 6 steps of 100 tokens, from the snapshot
    }

    [Fact]
    public void Stopping_ends_the_run_and_later_commands_are_refused()
    {
        var c = Trained();
        Accepted(c, new StopRun(RunId, "operator"));
        Assert.Equal((RunPhase.Stopped, "operator"), (Status(c).Phase, Status(c).Reason));
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, new StopRun(RunId, "again")));
        Assert.IsType<RunCommandRejected>(Ask<IRunReply>(c, Step(1, 4, 1.0)));
    }

    [Fact]
    public void A_failed_run_keeps_its_reason()
    {
        var c = Trained();
        Accepted(c, new FailRun(RunId, 1, "loss is NaN"));
        Restart(ref c);
        var status = Status(c);
        Assert.Equal((RunPhase.Failed, 1, "loss is NaN"), (status.Phase, status.Attempt, status.Reason));
    }

    // ---- The driver seam ----------------------------------------------------------------------------------------

    /// <summary>Reports its context to the probe, relays the probe's messages to the coordinator, throws on "crash".</summary>
    sealed class ScriptedDriver : ReceiveActor
    {
        public ScriptedDriver(RunDriverContext context, IActorRef probe)
        {
            probe.Tell((context, Self));
            Receive<string>(s => s == "crash", _ => throw new InvalidOperationException("out of GPU memory"));
            Receive<IRunCommand>(m => context.Coordinator.Tell(m, probe));
            Receive<CheckpointAndStop>(m => probe.Tell(m));
        }
    }

    sealed class ScriptedDrivers(IActorRef probe) : IRunDriverFactory
    {
        public Props DriverProps(RunDriverContext context) => Props.Create(() => new ScriptedDriver(context, probe));
    }

    [Fact]
    public void Each_attempt_gets_a_driver_with_its_context_and_the_old_one_is_stopped()
    {
        var probe = CreateTestProbe();
        var c = Start(Setup(driver: new ScriptedDrivers(probe.Ref)));
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        var (first, driver1) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        Assert.Equal((RunId, 1, 0L, (CommittedCheckpoint?)null), (first.RunId, first.Attempt, first.ResumeStep, first.ResumeFrom));
        Assert.Equal(_spec, first.Spec);
        Assert.Equal(c, first.Coordinator);

        driver1.Tell(new WorkersReady(RunId, 1));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        driver1.Tell(Step(1, 1, 3.0));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        driver1.Tell(new CommitCheckpoint(RunId, 1, 1, "/ckpt/1", 8));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));

        Watch(driver1);
        driver1.Tell(new RestartAttempt(RunId, 1, "worker lost"));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 2));
        ExpectTerminated(driver1);
        var (second, _) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        Assert.Equal((2, 1L, new CommittedCheckpoint(1, "/ckpt/1", 8)), (second.Attempt, second.ResumeStep, second.ResumeFrom));
    }

    [Fact]
    public void A_driver_that_fails_fails_the_run_with_its_error()
    {
        var probe = CreateTestProbe();
        var c = Start(Setup(driver: new ScriptedDrivers(probe.Ref)));
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        var (_, driver) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        EventFilter.Exception<InvalidOperationException>().ExpectOne(() => driver.Tell("crash"));
        AwaitAssert(() => Assert.Equal(RunPhase.Failed, Status(c).Phase), TimeSpan.FromSeconds(10));
        Assert.Equal("the run driver of attempt 1 failed: InvalidOperationException: out of GPU memory", Status(c).Reason);
    }

    /// <summary>A run with a scripted driver whose workers are ready and step 1 recorded.</summary>
    (IActorRef Coordinator, TestProbe Probe, IActorRef Driver) Training()
    {
        var probe = CreateTestProbe();
        var c = Start(Setup(driver: new ScriptedDrivers(probe.Ref)));
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        var (_, driver) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        driver.Tell(new WorkersReady(RunId, 1));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        driver.Tell(Step(1, 1, 3.0));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        return (c, probe, driver);
    }

    [Fact]
    public void A_stop_that_keeps_the_work_waits_for_the_drivers_checkpoint()
    {
        var (c, probe, driver) = Training();
        Accepted(c, new StopRun(RunId, "Ctrl+C", Checkpoint: true));
        probe.ExpectMsg(new CheckpointAndStop(RunId, 1, "Ctrl+C"));
        Assert.Equal(RunPhase.Running, Status(c).Phase); // until the driver has committed its checkpoint
        Accepted(c, new StopRun(RunId, "Ctrl+C", Checkpoint: true)); // asked twice: the driver is asked once
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        // The step in flight finishes and is checkpointed; then the driver reports the stop.
        driver.Tell(Step(1, 2, 2.5));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        driver.Tell(new CommitCheckpoint(RunId, 1, 2, "/ckpt/2", 16));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        Watch(driver);
        driver.Tell(new AttemptStopped(RunId, 1, 2, "Ctrl+C"));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        ExpectTerminated(driver);
        Restart(ref c);
        var status = Status(c);
        Assert.Equal((RunPhase.Stopped, "Ctrl+C", 2L, 2L), (status.Phase, status.Reason, status.LastStep, status.LastCheckpoint!.Step));
    }

    [Fact]
    public void A_stop_that_keeps_the_work_is_immediate_while_the_workers_are_being_placed()
    {
        var probe = CreateTestProbe();
        var c = Start(Setup(driver: new ScriptedDrivers(probe.Ref)));
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        var (_, placing) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        Watch(placing);
        Accepted(c, new StopRun(RunId, "Ctrl+C", Checkpoint: true)); // nothing trained in this attempt: nothing to keep
        ExpectTerminated(placing);
        Assert.Equal(RunPhase.Stopped, Status(c).Phase);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // the driver was not asked to checkpoint
    }

    [Fact]
    public void A_plain_stop_while_the_driver_checkpoints_stops_at_once()
    {
        // A second Ctrl+C: stop now, at the last committed checkpoint.
        var (c, probe, driver) = Training();
        Accepted(c, new StopRun(RunId, "Ctrl+C", Checkpoint: true));
        probe.ExpectMsg<CheckpointAndStop>();
        Watch(driver);
        Accepted(c, new StopRun(RunId, "Ctrl+C again"));
        ExpectTerminated(driver);
        Assert.Equal((RunPhase.Stopped, "Ctrl+C again"), (Status(c).Phase, Status(c).Reason));
    }

    [Fact]
    public void An_attempt_lost_while_stopping_stops_the_run_at_the_last_checkpoint_instead_of_restarting()
    {
        var (c, probe, driver) = Training();
        driver.Tell(new CommitCheckpoint(RunId, 1, 1, "/ckpt/1", 8));
        probe.ExpectMsg(new RunCommandAccepted(RunId, 1));
        Accepted(c, new StopRun(RunId, "Ctrl+C", Checkpoint: true));
        probe.ExpectMsg<CheckpointAndStop>();
        Watch(driver);
        driver.Tell(new RestartAttempt(RunId, 1, "worker lost"));
        // Refused, so the driver releases its workers (no next attempt takes them over).
        Assert.IsType<RunCommandRejected>(probe.ExpectMsg<IRunReply>());
        ExpectTerminated(driver);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // no driver for a second attempt
        var status = Status(c);
        Assert.Equal((RunPhase.Stopped, 1, 1L), (status.Phase, status.Attempt, status.LastCheckpoint!.Step));
        Assert.Contains("worker lost", status.Reason);
    }

    [Fact]
    public void Recovery_starts_a_driver_for_the_new_attempt()
    {
        var probe = CreateTestProbe();
        var setup = Setup(driver: new ScriptedDrivers(probe.Ref));
        var c = Start(setup);
        Ask<IRunReply>(c, new SubmitRun(RunId, _spec));
        probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        Restart(ref c, setup);
        var (context, _) = probe.ExpectMsg<(RunDriverContext, IActorRef)>();
        Assert.Equal(2, context.Attempt);
    }

    // ---- The journal, read directly ------------------------------------------------------------------------------

    int JournalRows()
    {
        using var db = new SqliteConnection($"Data Source={_dir["journal.db"]}");
        db.Open();
        using var count = db.CreateCommand();
        count.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'journal'";
        if (Convert.ToInt32(count.ExecuteScalar()) == 0) return 0;
        count.CommandText = "SELECT COUNT(*) FROM journal WHERE persistence_id = $id";
        count.Parameters.AddWithValue("$id", RunCoordinator.PersistenceIdPrefix + RunId);
        return Convert.ToInt32(count.ExecuteScalar());
    }

    long[] SnapshotSequenceNumbers()
    {
        using var db = new SqliteConnection($"Data Source={_dir["snapshots.db"]}");
        db.Open();
        using var query = db.CreateCommand();
        query.CommandText = "SELECT sequence_number FROM snapshot WHERE persistence_id = $id ORDER BY sequence_number";
        query.Parameters.AddWithValue("$id", RunCoordinator.PersistenceIdPrefix + RunId);
        using var reader = query.ExecuteReader();
        var numbers = new List<long>();
        while (reader.Read()) numbers.Add(reader.GetInt64(0));
        return [.. numbers];
    }
}
