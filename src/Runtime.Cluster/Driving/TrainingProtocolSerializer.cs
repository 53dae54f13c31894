using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Sharding;
using Runtime.Cluster.Workers;

namespace Runtime.Cluster.Driving;

/// <summary>
/// JSON for the training protocol (driver, workers, data loaders, progress), keyed by manifest names that do not
/// change when a CLR type is renamed or moved, like <see cref="Runs.RunProtocolSerializer"/>: nodes of one cluster may
/// run builds a little apart. A spec is its canonical HOCON text, a worker id its <c>run/&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c> text.
/// </summary>
public sealed class TrainingProtocolSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka reserves 0..100; 9101 is the run protocol, 7301 the tensor wire.</summary>
    public const int Id = 9102;

    static readonly IReadOnlyDictionary<string, Type> TypesByManifest = new Dictionary<string, Type>
    {
        ["InitializeWorker.v1"] = typeof(InitializeWorker),
        ["WorkerReady.v1"] = typeof(WorkerReady),
        ["ConnectWorkers.v1"] = typeof(ConnectWorkers),
        ["WorkerConnected.v1"] = typeof(WorkerConnected),
        ["TrainStep.v1"] = typeof(TrainStep),
        ["StepDone.v1"] = typeof(StepDone),
        ["StepAborted.v1"] = typeof(StepAborted),
        ["WorkerFailed.v1"] = typeof(WorkerFailed),
        ["PrepareCheckpoint.v1"] = typeof(PrepareCheckpoint),
        ["CheckpointShardWritten.v1"] = typeof(CheckpointShardWritten),
        ["AbortAttempt.v1"] = typeof(AbortAttempt),
        ["ReleaseWorker.v1"] = typeof(ReleaseWorker),
        ["LoaderReady.v1"] = typeof(LoaderReady),
        ["LoaderFailed.v1"] = typeof(LoaderFailed),
        ["LoadStep.v1"] = typeof(LoadStep),
        ["PlacingWorkers.v1"] = typeof(PlacingWorkers),
        ["WaitingForCapacity.v1"] = typeof(WaitingForCapacity),
        ["TrainingStarted.v1"] = typeof(TrainingStarted),
        ["StepProgress.v1"] = typeof(StepProgress),
        ["CheckpointSaved.v1"] = typeof(CheckpointSaved),
        ["AttemptAborted.v1"] = typeof(AttemptAborted),
        ["RunFinished.v1"] = typeof(RunFinished),
        ["StepDetails.v1"] = typeof(StepDetails),
        ["WorkerMemory.v1"] = typeof(WorkerMemory),
        ["RunWorkersReleased.v1"] = typeof(RunWorkersReleased),
    };

    static readonly IReadOnlyDictionary<Type, string> ManifestsByType = TypesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);

    static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower), new RunSpecJsonConverter(), new WorkerIdConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a diverged loss is NaN, and still a fact
        IgnoreReadOnlyProperties = true,
    };

    public override int Identifier => Id;

    public override string Manifest(object o) =>
        ManifestsByType.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType().FullName} is not a training protocol message known to {nameof(TrainingProtocolSerializer)}");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    public override object FromBinary(byte[] bytes, string manifest) =>
        TypesByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"training protocol {manifest}: null payload")
            : throw new SerializationException($"unknown training protocol manifest \"{manifest}\" (sent by a newer Runtime?)");

    sealed class WorkerIdConverter : JsonConverter<WorkerId>
    {
        public override WorkerId Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            WorkerId.Parse(reader.GetString() ?? throw new JsonException("a worker id must be a string"));

        public override void Write(Utf8JsonWriter writer, WorkerId value, JsonSerializerOptions options) =>
            writer.WriteStringValue(value.ToString());
    }
}
