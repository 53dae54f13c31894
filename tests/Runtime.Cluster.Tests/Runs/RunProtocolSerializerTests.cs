using System.Text;
using Akka.Configuration;
using Akka.Serialization;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Tests.Runs;

public sealed class RunProtocolSerializerTests : Akka.TestKit.Xunit2.TestKit
{
    public RunProtocolSerializerTests()
        : base(ConfigurationFactory.ParseString("akka.actor.provider = local").WithFallback(RuntimeConfig.Reference)) { }

    static readonly RunSpec Spec = RunSpecParser.Parse(
        "run { name = \"r\", model = \"/m\", data.path = \"/d.jsonl\", lora.targets = [q_proj, v_proj], train.lr = 3e-5 }", "r.conf", "/");

    static readonly CommittedCheckpoint Checkpoint = new(500, "/runs/r/checkpoints/step-500/manifest.json", 32000);

    public static TheoryData<IRunProtocol> Messages() =>
    [
        new SubmitRun("r", Spec),
        new SubmitRun("r", Spec, "latest"),
        new SubmitRun("r", Spec with { Admission = new AdmissionSpec(Force: true) }), // a forced admission stays forced in the journal
        new GetRunStatus("r"),
        new StopRun("r", "operator"),
        new StopRun("r", "Ctrl+C", Checkpoint: true),
        new CheckpointAndStop("r", 2, "Ctrl+C"),
        new AttemptStopped("r", 2, 41, "Ctrl+C"),
        new WorkersReady("r", 2),
        new RecordStep("r", 2, 17, 1.25, 65536, 1.9e-4, 0.73, 3.5),
        new RecordStep("r", 2, 18, double.NaN, 65536, 1.9e-4, double.PositiveInfinity, 3.5),
        new CommitCheckpoint("r", 2, 500, Checkpoint.ManifestPath, 32000),
        new RestartAttempt("r", 2, "node lost"),
        new CompleteRun("r", 3, 1500),
        new FailRun("r", 3, "diverged"),
        new RunAccepted("r"),
        new RunCommandAccepted("r", 3),
        new RunCommandRejected("r", "why"),
        new StaleAttempt("r", 1, 3),
        new RunStatus("r", RunPhase.Running, 3, 1200, 0.98, 123456789, Checkpoint, "the run coordinator restarted", Spec),
        new RunStatus("r", RunPhase.None, 0, 0, null, 0, null, null, null),
        new RunSubmitted("r", Spec, new DateTimeOffset(2026, 11, 26, 10, 0, 0, TimeSpan.Zero)),
        new RunSubmitted("r", Spec, new DateTimeOffset(2026, 11, 26, 10, 0, 0, TimeSpan.Zero), Checkpoint),
        new RunSubmitted("r", Spec with { Admission = new AdmissionSpec(Force: true) }, new DateTimeOffset(2026, 11, 26, 10, 0, 0, TimeSpan.Zero)),
        new RunStarted("r", 1),
        new StepCompleted("r", 1, 1, 2.5, 4096, 2e-4, 1.1, 0.9),
        new CheckpointCommitted("r", 1, 500, Checkpoint.ManifestPath, 32000),
        new AttemptStarted("r", 2, "node lost", 500),
        new RunCompleted("r", 2, 1500),
        new RunFailed("r", 2, "diverged"),
        new RunStopped("r", "operator"),
        new RunState(RunPhase.Running, Spec, 2, 600, 1.5, 99, Checkpoint, "node lost"),
    ];

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_message_goes_through_the_run_serializer_and_back(IRunProtocol message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<RunProtocolSerializer>(serializer);
        var manifest = Serialization.ManifestFor(serializer, message);
        Assert.Equal(message.GetType().Name + ".v1", manifest);
        var bytes = serializer.ToBinary(message);
        var back = Sys.Serialization.Deserialize(bytes, RunProtocolSerializer.Id, manifest);
        Assert.Equal(message, back);
    }

    [Fact]
    public void A_stop_from_an_older_sender_without_the_checkpoint_field_is_a_plain_stop()
    {
        var bytes = Encoding.UTF8.GetBytes("{\"runId\":\"r\",\"reason\":\"operator\"}");
        Assert.Equal(new StopRun("r", "operator", Checkpoint: false), Sys.Serialization.Deserialize(bytes, RunProtocolSerializer.Id, "StopRun.v1"));
    }

    [Fact]
    public void Rejections_keep_every_problem()
    {
        var message = new RunRejected("r", [new SpecProblem("run.model", "run.model: /m does not exist"), new SpecProblem("run.parallel", "too many")]);
        var serializer = Sys.Serialization.FindSerializerFor(message);
        var back = Assert.IsType<RunRejected>(Sys.Serialization.Deserialize(serializer.ToBinary(message), RunProtocolSerializer.Id, "RunRejected.v1"));
        Assert.Equal(message.Problems, back.Problems);
    }

    [Fact]
    public void A_spec_is_stored_as_its_canonical_hocon()
    {
        var bytes = Sys.Serialization.FindSerializerFor(new RunSubmitted("r", Spec, DateTimeOffset.UnixEpoch)).ToBinary(new RunSubmitted("r", Spec, DateTimeOffset.UnixEpoch));
        var json = Encoding.UTF8.GetString(bytes);
        Assert.Contains(System.Text.Json.JsonSerializer.Serialize(RunSpecHocon.Write(Spec)), json);
        Assert.Contains("\"runId\":\"r\"", json);
    }

    [Fact]
    public void A_submission_written_before_resuming_existed_reads_as_a_start_from_step_0()
    {
        var old = new RunSubmitted("r", Spec, DateTimeOffset.UnixEpoch);
        var json = Encoding.UTF8.GetString(Sys.Serialization.FindSerializerFor(old).ToBinary(old)).Replace(",\"resumedFrom\":null", "");
        Assert.DoesNotContain("resumedFrom", json);
        var back = Assert.IsType<RunSubmitted>(Sys.Serialization.Deserialize(Encoding.UTF8.GetBytes(json), RunProtocolSerializer.Id, "RunSubmitted.v1"));
        Assert.Null(back.ResumedFrom);
        Assert.Equal((0L, (CommittedCheckpoint?)null), (RunState.Empty.Apply(back).LastStep, RunState.Empty.Apply(back).LastCheckpoint));
        // A resumed submission starts its history at the checkpoint: the next step is 501, and a restart goes back there.
        var resumed = RunState.Empty.Apply(new RunSubmitted("r", Spec, DateTimeOffset.UnixEpoch, Checkpoint));
        Assert.Equal((RunPhase.Starting, 500L, Checkpoint, 500L), (resumed.Phase, resumed.LastStep, resumed.LastCheckpoint, resumed.ResumeStep));
    }

    [Fact]
    public void An_unknown_manifest_is_an_error_that_says_so()
    {
        var e = Assert.Throws<System.Runtime.Serialization.SerializationException>(
            () => Sys.Serialization.Deserialize([], RunProtocolSerializer.Id, "RunTeleported.v9"));
        Assert.Contains("RunTeleported.v9", e.Message);
    }
}
