using System.Text;
using Akka.Configuration;
using Akka.Serialization;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Workers;
using Runtime.Training.Checkpoints;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Tests.Driving;

/// <summary>The training protocol crosses nodes as JSON under stable manifests, through the serializer reference.conf binds.</summary>
public sealed class TrainingProtocolSerializerTests : Akka.TestKit.Xunit2.TestKit
{
    public TrainingProtocolSerializerTests()
        : base(ConfigurationFactory.ParseString("akka.actor.provider = local").WithFallback(RuntimeConfig.Reference)) { }

    static readonly RunSpec Spec = RunSpecParser.Parse(
        "run { name = \"r\", model = \"/m\", data.path = \"/d.jsonl\", parallel { data = 2, pipeline = 2 } }", "r.conf", "/");

    static readonly WorkerId W = new("r", 1, 0, 0);

    static readonly StepTimings Timings = new(1.5, 1.2, 0.001, 0.2, 0.099);

    static readonly MemoryByCategory Measured = new(16_811_136, 311_296, 311_296, 622_592, 410_321_987);

    static readonly MemoryByCategory Planned = new(16_811_136, 311_296, 311_296, 622_592, 394_264_576);

    public static TheoryData<ITrainingProtocol> Messages() =>
    [
        new InitializeWorker(W, 2, Spec, new WorkerSlice(0, 2, true, false), 600, "/runs/r/checkpoint-300"),
        new InitializeWorker(W, 1, Spec, new WorkerSlice(2, 4, false, true), 600, null),
        new WorkerReady(W, 2, "akka.tcp://runtime@10.0.0.2:4053", 12345, 3.25),
        new ConnectWorkers(W, 2, [new WorkerPlacement(W, "akka.tcp://runtime@10.0.0.2:4053"), new WorkerPlacement(new WorkerId("r", 0, 0, 0), "akka.tcp://runtime@10.0.0.1:4053")]),
        new WorkerConnected(W, 2),
        new TrainStep(W, 2, 17, 4096),
        new TrainStep(W, 2, 1, 4096, MeasureMemory: true),
        new StepDone(W, 2, 17, 1234.5, 1000, 2048, 0.73, 1.9e-4, Timings, 104, 1L << 33),
        new StepDone(W, 2, 1, 1234.5, 1000, 2048, 0.73, 1.9e-4, Timings, 104, 1L << 33, new WorkerMemoryReading(Measured, 1)),
        new StepDone(W, 2, 18, double.NaN, 1000, 2048, double.PositiveInfinity, 1.9e-4, Timings, 104, 1L << 33),
        new StepAborted(W, 2, 17, "cancelled"),
        new WorkerFailed(W, 2, "timed out", Retryable: true),
        new PrepareCheckpoint(W, 2, 300, "/runs/r/checkpoint-300.tmp"),
        new CheckpointShardWritten(W, 2, 300, [new CheckpointFile("trainable.1.0.0.safetensors", new string('a', 64), 1024)]),
        new AbortAttempt(W, 2, "worker lost"),
        new ReleaseWorker(W, 2),
        new LoaderReady("r", 2, 1),
        new LoaderFailed("r", 2, 1, "no tokenizer"),
        new LoaderFailed("r", 2, 1, "worker run/r/1.0.0 is gone", Retryable: true),
        new LoadStep("r", 2, 17, 136),
        new PlacingWorkers("r", 2, 3, 4),
        new WaitingForCapacity("r", 2, 3, 4, 15.5),
        new TrainingStarted("r", 2, 300, 600, 4),
        new StepProgress("r", 2, 301, 600, 1.25, 1.9e-4, 0.7, 4096, 1234.5, 0.8, 239.2),
        new CheckpointSaved("r", 2, 400, "/runs/r/checkpoint-400"),
        new AttemptAborted("r", 2, "node lost"),
        new RunFinished("r", 2, RunPhase.Completed, 600, "/runs/r/adapter", null),
        new RunFinished("r", 2, RunPhase.Failed, 17, null, "diverged"),
        new StepDetails("r", 2, 17, [new WorkerStepStats(W, 104, 1L << 33, Timings)]),
        new WorkerMemory("r", 2, 1, W, Measured, Planned, 1),
        new WorkerMemory("r", 2, 600, W, Measured with { Activations = null }, Planned, 4),
        new RunWorkersReleased("r"),
    ];

    [Theory]
    [MemberData(nameof(Messages))]
    public void Every_message_goes_through_the_training_serializer_and_back(ITrainingProtocol message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<TrainingProtocolSerializer>(serializer);
        var manifest = Serialization.ManifestFor(serializer, message);
        Assert.Equal(message.GetType().Name + ".v1", manifest);
        var bytes = serializer.ToBinary(message);
        var back = Sys.Serialization.Deserialize(bytes, TrainingProtocolSerializer.Id, manifest);
        Assert.Equal(message.GetType(), back.GetType());
        // Records holding lists compare their lists by reference: compare what they serialize to instead.
        Assert.Equal(Encoding.UTF8.GetString(bytes), Encoding.UTF8.GetString(serializer.ToBinary(back)));
        if (message is not (ConnectWorkers or CheckpointShardWritten or StepDetails)) Assert.Equal(message, back);
    }

    [Fact]
    public void Worker_ids_and_specs_travel_as_their_text()
    {
        var message = new InitializeWorker(W, 2, Spec, new WorkerSlice(0, 2, true, false), 600, null);
        var json = Encoding.UTF8.GetString(Sys.Serialization.FindSerializerFor(message).ToBinary(message));
        Assert.Contains("\"worker\":\"run/r/1.0.0\"", json);
        Assert.Contains(System.Text.Json.JsonSerializer.Serialize(RunSpecHocon.Write(Spec)), json);
    }

    [Fact]
    public void Messages_of_a_build_without_memory_readings_read_as_none()
    {
        // StepDone and TrainStep as a node of the previous build writes them: no memory, no request to measure.
        var done = new StepDone(W, 2, 17, 1234.5, 1000, 2048, 0.73, 1.9e-4, Timings, 104, 1L << 33);
        var serializer = Sys.Serialization.FindSerializerFor(done);
        var older = Encoding.UTF8.GetString(serializer.ToBinary(done)).Replace(",\"memory\":null", "");
        Assert.DoesNotContain("memory\":", older);
        Assert.Equal(done, Sys.Serialization.Deserialize(Encoding.UTF8.GetBytes(older), TrainingProtocolSerializer.Id, "StepDone.v1"));
        var step = new TrainStep(W, 2, 17, 4096);
        var olderStep = Encoding.UTF8.GetString(serializer.ToBinary(step)).Replace(",\"measureMemory\":false", "");
        Assert.DoesNotContain("measureMemory", olderStep);
        Assert.Equal(step, Sys.Serialization.Deserialize(Encoding.UTF8.GetBytes(olderStep), TrainingProtocolSerializer.Id, "TrainStep.v1"));
    }

    [Fact]
    public void An_unknown_manifest_is_an_error_that_says_so()
    {
        var e = Assert.Throws<System.Runtime.Serialization.SerializationException>(
            () => Sys.Serialization.Deserialize([], TrainingProtocolSerializer.Id, "WorkerTeleported.v9"));
        Assert.Contains("WorkerTeleported.v9", e.Message);
    }
}
