using System.Globalization;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Data.Sqlite;
using Runtime.Cluster.Configuration;

namespace Runtime.Cluster.Hosting;

/// <summary>
/// A node's final configuration: reference.conf &lt;- each file in order &lt;- command-line options &lt;- overrides,
/// then what only start-up can know: the slot roles and the SQLite files inside the data folder.
/// </summary>
public sealed record NodeConfig(Config Config, RuntimeSettings Settings, NodeSlots Slots)
{
    public const string SystemName = "runtime";

    public static NodeConfig Build(NodeOptions options)
    {
        var environment = options.Environment ?? HoconLoader.ProcessEnvironment;
        var config = RuntimeConfig.Reference;
        foreach (var file in options.ConfigFiles)
            config = HoconLoader.LoadFile(file, environment).WithFallback(config);
        config = CommandLine(options).WithFallback(config);
        if (options.Overrides is not null) config = options.Overrides.WithFallback(config);

        var settings = RuntimeSettings.From(config);
        foreach (var seed in config.GetStringList("akka.cluster.seed-nodes") ?? [])
            CheckSeed(seed);
        var roles = config.GetStringList("akka.cluster.roles") ?? [];
        if (roles.FirstOrDefault(NodeSlots.IsSlotRole) is { } reserved)
            throw new HoconException($"akka.cluster.roles: \"{reserved}\" is set by the node itself; use runtime.node.slots (--slots)");
        var slots = roles.Contains(settings.Sharding.WorkerRole)
            ? NodeSlots.Resolve(settings.Node.Slots, settings.Node.CoresPerCpuSlot, options.SlotProbe, settings.Node.SlotMemory)
            : new NodeSlots(0, options.SlotProbe.GpuCount() > 0 ? SlotKind.Gpu : SlotKind.Cpu);

        var derived = new StringBuilder();
        derived.Append("akka.cluster.roles = [").Append(string.Join(", ", roles.Concat(slots.Roles).Select(HoconText.Quote))).Append("]\n");
        FillSqlite(config, derived, "akka.persistence.journal.plugin", Path.Combine(settings.Node.DataDir, settings.Sqlite.JournalFile));
        FillSqlite(config, derived, "akka.persistence.snapshot-store.plugin", Path.Combine(settings.Node.DataDir, settings.Sqlite.SnapshotFile));
        config = HoconLoader.Parse(derived.ToString(), "node start-up", environment: _ => null).WithFallback(config);
        return new NodeConfig(config, settings, slots);
    }

    /// <summary>A seed must be an address of a "runtime" system: a node can only join a cluster of its own name.</summary>
    static void CheckSeed(string seed)
    {
        Address address;
        try
        {
            address = Address.Parse(seed);
        }
        catch (Exception e) when (e is UriFormatException or ArgumentException)
        {
            throw new HoconException($"akka.cluster.seed-nodes: \"{seed}\" is not an address such as akka.tcp://{SystemName}@10.0.0.1:4053");
        }
        if (address.System != SystemName || string.IsNullOrEmpty(address.Host) || address.Port is not > 0)
            throw new HoconException($"akka.cluster.seed-nodes: \"{seed}\" must name system \"{SystemName}\", a host and a port (akka.tcp://{SystemName}@10.0.0.1:4053)");
    }

    static Config CommandLine(NodeOptions o)
    {
        var b = new StringBuilder();
        if (o.Seeds is not null) b.Append("akka.cluster.seed-nodes = [").Append(string.Join(", ", o.Seeds.Select(HoconText.Quote))).Append("]\n");
        if (o.Roles is not null) b.Append("akka.cluster.roles = [").Append(string.Join(", ", o.Roles.Select(HoconText.Quote))).Append("]\n");
        if (o.Hostname is not null) b.Append("akka.remote.dot-netty.tcp.hostname = ").Append(HoconText.Quote(o.Hostname)).Append('\n');
        if (o.Port is { } port)
        {
            if (port is < 0 or > 65535) throw new HoconException($"--port must be between 0 and 65535 (got {port})");
            b.Append("akka.remote.dot-netty.tcp.port = ").Append(port.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        if (o.Slots is not null)
        {
            if (o.Slots != "auto") NodeSettings.ParseSlots(o.Slots, "--slots");
            b.Append("runtime.node.slots = ").Append(HoconText.Quote(o.Slots)).Append('\n');
        }
        if (o.DataDir is not null) b.Append("runtime.node.data-dir = ").Append(HoconText.Quote(Path.GetFullPath(o.DataDir))).Append('\n');
        return HoconLoader.Parse(b.ToString(), "command line", environment: _ => null);
    }

    /// <summary>
    /// An SQL persistence plugin with an empty connection string gets the node's SQLite file when its provider is
    /// SQLite; with any other provider an empty connection string is an error naming the key.
    /// </summary>
    static void FillSqlite(Config config, StringBuilder derived, string pluginKey, string sqliteFile)
    {
        var plugin = ConfigValues.String(config, pluginKey);
        if (!config.HasPath(plugin + ".provider-name")) return; // not an Akka.Persistence.Sql plugin: its own business
        var provider = ConfigValues.String(config, plugin + ".provider-name");
        var connection = ConfigValues.Scalar(config, plugin + ".connection-string") ?? "";
        if (connection.Trim().Length > 0) return;
        if (!provider.StartsWith("SQLite", StringComparison.OrdinalIgnoreCase))
            throw new HoconException(
                $"{plugin}.connection-string is empty for provider {provider} (hocon/persistence-postgres.conf reads it from RUNTIME_POSTGRES)");
        var connectionString = new SqliteConnectionStringBuilder { DataSource = sqliteFile }.ToString();
        derived.Append(plugin).Append(".connection-string = ").Append(HoconText.Quote(connectionString)).Append('\n');
    }
}
