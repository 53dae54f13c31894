using Akka.Configuration;

namespace Runtime.Cluster.Configuration;

/// <summary>The <c>runtime</c> section of a node's configuration, typed. reference.conf holds every default.</summary>
public sealed record RuntimeSettings(
    NodeSettings Node,
    SqliteFileSettings Sqlite,
    CommandHostSettings Cmd,
    ShardingSettings Sharding,
    RunCoordinatorSettings RunCoordinator,
    WorkerSettings Worker,
    DriverSettings Driver)
{
    public static RuntimeSettings From(Config config) => new(
        NodeSettings.From(config),
        new SqliteFileSettings(
            ConfigValues.String(config, "runtime.persistence.sqlite.journal-file"),
            ConfigValues.String(config, "runtime.persistence.sqlite.snapshot-file")),
        new CommandHostSettings(ConfigValues.String(config, "runtime.cmd.host"), ConfigValues.Int(config, "runtime.cmd.port", min: 0)),
        new ShardingSettings(
            ConfigValues.Int(config, "runtime.sharding.max-shards", min: 1),
            ConfigValues.String(config, "runtime.sharding.coordinator-role"),
            ConfigValues.String(config, "runtime.sharding.worker-role")),
        RunCoordinatorSettings.From(config),
        WorkerSettings.From(config),
        DriverSettings.From(config));
}

/// <param name="Slots">Explicit slot count, or null for auto (GPUs, else CPU cores / <paramref name="CoresPerCpuSlot"/>).</param>
/// <param name="DataDir">Absolute: relative settings are resolved against the working directory.</param>
/// <param name="SlotMemory">How much memory each slot offers (runtime.node.slot-memory, runtime.node.gpu).</param>
public sealed record NodeSettings(int? Slots, int CoresPerCpuSlot, string DataDir, TimeSpan JournalStartTimeout, SlotMemorySettings SlotMemory)
{
    public static NodeSettings From(Config config)
    {
        var slots = ConfigValues.String(config, "runtime.node.slots");
        int? explicitSlots = slots == "auto" ? null : ParseSlots(slots, "runtime.node.slots");
        return new NodeSettings(
            explicitSlots,
            ConfigValues.Int(config, "runtime.node.cores-per-cpu-slot", min: 1),
            Path.GetFullPath(ConfigValues.String(config, "runtime.node.data-dir")),
            ConfigValues.DurationOrOff(config, "runtime.node.journal-start-timeout")
                ?? throw new HoconException("runtime.node.journal-start-timeout must be a duration (a node checks its journal at start)"),
            SlotMemorySettings.From(config));
    }

    /// <summary>"auto" is handled by the caller; this reads N >= 0 and names <paramref name="key"/> otherwise.</summary>
    public static int ParseSlots(string text, string key) =>
        int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n)
            ? n
            : throw new HoconException($"{key} must be auto or a whole number of slots >= 0 (got \"{text}\")");
}

/// <summary>
/// How a node sizes one slot's memory, what a run's memory plan is admitted against. <see cref="Bytes"/>
/// (runtime.node.slot-memory, null: auto) sets it for any kind of slot; otherwise a GPU slot has its GPU's memory, from
/// the GPU catalogue by <see cref="Gpu"/> (runtime.node.gpu, null: auto, the model the driver reports), and a CPU
/// slot the machine's memory divided by the node's slots.
/// </summary>
public sealed record SlotMemorySettings(long? Bytes, string? Gpu)
{
    public const string BytesKey = "runtime.node.slot-memory";
    public const string GpuKey = "runtime.node.gpu";

    public static SlotMemorySettings Auto { get; } = new(null, null);

    public static SlotMemorySettings From(Config config)
    {
        var bytes = ConfigValues.String(config, BytesKey);
        var gpu = ConfigValues.String(config, GpuKey).Trim();
        return new SlotMemorySettings(bytes == "auto" ? null : ConfigValues.ByteSize(config, BytesKey, min: 1), gpu == "auto" ? null : gpu);
    }
}

/// <summary>File names (inside the node's data folder) of the SQLite journal and snapshot store.</summary>
public sealed record SqliteFileSettings(string JournalFile, string SnapshotFile);

/// <summary>Where the node's command host listens (served by the control-plane stage).</summary>
public sealed record CommandHostSettings(string Host, int Port);

public sealed record ShardingSettings(int MaxShards, string CoordinatorRole, string WorkerRole);

/// <param name="PassivateInactiveAfter">Null: coordinators without an active run stay in memory.</param>
public sealed record RunCoordinatorSettings(int SnapshotEvery, TimeSpan? PassivateInactiveAfter)
{
    public static RunCoordinatorSettings From(Config config) => new(
        ConfigValues.Int(config, "runtime.run-coordinator.snapshot-every", min: 1),
        ConfigValues.DurationOrOff(config, "runtime.run-coordinator.passivate-inactive-after"));
}

/// <param name="TorchThreads">libtorch intra-op threads; null: auto (cores / the node's slots, at least 1).</param>
/// <param name="Dispatcher">The config path of the dispatcher torch actors run on (a PinnedDispatcher).</param>
public sealed record WorkerSettings(int? TorchThreads, string Dispatcher)
{
    public const string DispatcherPath = "runtime.worker.dispatcher";

    public static WorkerSettings From(Config config)
    {
        var threads = ConfigValues.String(config, "runtime.worker.torch-threads");
        int? explicitThreads = threads == "auto" ? null
            : int.TryParse(threads, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n >= 1 ? n
            : throw new HoconException($"runtime.worker.torch-threads must be auto or a whole number >= 1 (got \"{threads}\")");
        if (!config.HasPath(DispatcherPath + ".type")) throw new HoconException($"{DispatcherPath}.type is not set");
        return new WorkerSettings(explicitThreads, DispatcherPath);
    }

    /// <summary>The thread count a worker sets: the configured one, or max(1, cores / slots).</summary>
    public int ThreadsFor(int cores, int slots) => TorchThreads ?? Math.Max(1, cores / Math.Max(1, slots));
}

/// <param name="CapacityNoticeAfter">How long an attempt may wait for its workers before it reports "waiting for capacity".</param>
/// <param name="MaxAttempts">Attempts after which a run that keeps losing workers fails.</param>
/// <param name="PrefetchSteps">Steps of data each loader sends ahead of the running step.</param>
public sealed record DriverSettings(TimeSpan CapacityNoticeAfter, int MaxAttempts, int PrefetchSteps)
{
    public static DriverSettings From(Config config) => new(
        ConfigValues.DurationOrOff(config, "runtime.driver.capacity-notice-after")
            ?? throw new HoconException("runtime.driver.capacity-notice-after must be a duration, not off"),
        ConfigValues.Int(config, "runtime.driver.max-attempts", min: 1),
        ConfigValues.Int(config, "runtime.driver.prefetch-steps", min: 1));
}
