using System.Runtime.Serialization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Runs;

/// <summary>
/// JSON for the run protocol, keyed by manifest names that do not change when a CLR type is renamed or moved: the
/// journal outlives the code that wrote it. A spec inside a message is its canonical HOCON text
/// (<see cref="RunSpecHocon"/>), the same form a person reads. Changing an event's shape means a new manifest
/// (".v2") beside the old one, never editing the old one's meaning.
/// </summary>
public sealed class RunProtocolSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Akka reserves 0..100; this is Runtime's run protocol.</summary>
    public const int Id = 9101;

    static readonly IReadOnlyDictionary<string, Type> TypesByManifest = new Dictionary<string, Type>
    {
        ["SubmitRun.v1"] = typeof(SubmitRun),
        ["GetRunStatus.v1"] = typeof(GetRunStatus),
        ["StopRun.v1"] = typeof(StopRun),
        ["WorkersReady.v1"] = typeof(WorkersReady),
        ["RecordStep.v1"] = typeof(RecordStep),
        ["CommitCheckpoint.v1"] = typeof(CommitCheckpoint),
        ["RestartAttempt.v1"] = typeof(RestartAttempt),
        ["CompleteRun.v1"] = typeof(CompleteRun),
        ["FailRun.v1"] = typeof(FailRun),
        ["AttemptStopped.v1"] = typeof(AttemptStopped),
        ["CheckpointAndStop.v1"] = typeof(CheckpointAndStop),
        ["RunAccepted.v1"] = typeof(RunAccepted),
        ["RunRejected.v1"] = typeof(RunRejected),
        ["RunCommandAccepted.v1"] = typeof(RunCommandAccepted),
        ["RunCommandRejected.v1"] = typeof(RunCommandRejected),
        ["StaleAttempt.v1"] = typeof(StaleAttempt),
        ["RunStatus.v1"] = typeof(RunStatus),
        ["RunSubmitted.v1"] = typeof(RunSubmitted),
        ["RunStarted.v1"] = typeof(RunStarted),
        ["StepCompleted.v1"] = typeof(StepCompleted),
        ["CheckpointCommitted.v1"] = typeof(CheckpointCommitted),
        ["AttemptStarted.v1"] = typeof(AttemptStarted),
        ["RunCompleted.v1"] = typeof(RunCompleted),
        ["RunFailed.v1"] = typeof(RunFailed),
        ["RunStopped.v1"] = typeof(RunStopped),
        ["RunState.v1"] = typeof(RunState),
    };

    static readonly IReadOnlyDictionary<Type, string> ManifestsByType = TypesByManifest.ToDictionary(kv => kv.Value, kv => kv.Key);

    static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower), new RunSpecJsonConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a diverged loss is NaN, and still a fact
        IgnoreReadOnlyProperties = true, // computed members (RunStatus.IsFinished, ...) are not data
    };

    public override int Identifier => Id;

    public override string Manifest(object o) =>
        ManifestsByType.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType().FullName} is not a run protocol message known to {nameof(RunProtocolSerializer)}");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    public override object FromBinary(byte[] bytes, string manifest) =>
        TypesByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"run protocol {manifest}: null payload")
            : throw new SerializationException($"unknown run protocol manifest \"{manifest}\" (written by a newer Runtime?)");
}
