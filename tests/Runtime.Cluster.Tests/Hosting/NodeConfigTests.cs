using Akka.Configuration;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Hosting;

public class NodeConfigTests
{
    static readonly FixedSlotProbe TwoCores = new(0, 2);

    [Fact]
    public void Node_conf_over_reference_then_command_line_on_top()
    {
        using var dir = new TempDir();
        var node = NodeConfig.Build(new NodeOptions
        {
            ConfigFiles = [Repo.Hocon("node.conf")],
            Seeds = ["akka.tcp://runtime@10.0.0.1:4053", "akka.tcp://runtime@10.0.0.2:4053"],
            Roles = ["worker"],
            Hostname = "10.0.0.3",
            Port = 5000,
            Slots = "3",
            DataDir = dir.Path,
            SlotProbe = TwoCores,
        });
        var c = node.Config;
        Assert.Equal(["akka.tcp://runtime@10.0.0.1:4053", "akka.tcp://runtime@10.0.0.2:4053"], c.GetStringList("akka.cluster.seed-nodes"));
        // FixedSlotProbe's 16 GiB over 3 CPU slots.
        Assert.Equal(["worker", "slots:3", "slot-kind:cpu", "slot-memory:5726623061"], c.GetStringList("akka.cluster.roles"));
        Assert.Equal("10.0.0.3", c.GetString("akka.remote.dot-netty.tcp.hostname"));
        Assert.Equal(5000, c.GetInt("akka.remote.dot-netty.tcp.port"));
        Assert.Equal(new NodeSlots(3, SlotKind.Cpu, 5726623061), node.Slots);
        Assert.Equal(dir.Path, node.Settings.Node.DataDir);
        Assert.Equal("keep-majority", c.GetString("akka.cluster.split-brain-resolver.active-strategy")); // from reference.conf
    }

    [Fact]
    public void Files_alone_decide_when_no_options_are_given()
    {
        var node = NodeConfig.Build(new NodeOptions { ConfigFiles = [Repo.Hocon("seed.conf")], SlotProbe = TwoCores });
        var c = node.Config;
        Assert.Equal(4053, c.GetInt("akka.remote.dot-netty.tcp.port"));
        Assert.Equal(["akka.tcp://runtime@127.0.0.1:4053"], c.GetStringList("akka.cluster.seed-nodes"));
        Assert.Equal(["worker", "coordinator", "slots:2", "slot-kind:cpu", "slot-memory:8589934592"], c.GetStringList("akka.cluster.roles"));
        Assert.Equal(new NodeSlots(2, SlotKind.Cpu, 8L << 30), node.Slots); // auto: one per core, half the memory each
    }

    [Fact]
    public void Slot_memory_and_gpu_come_from_the_node_settings()
    {
        var set = NodeConfig.Build(new NodeOptions
        {
            Slots = "2", SlotProbe = TwoCores, Overrides = ConfigurationFactory.ParseString("runtime.node.slot-memory = 3GiB"),
        });
        Assert.Equal(new NodeSlots(2, SlotKind.Cpu, 3L << 30), set.Slots);
        Assert.Contains("slot-memory:3221225472", set.Config.GetStringList("akka.cluster.roles"));

        var gpu = NodeConfig.Build(new NodeOptions
        {
            SlotProbe = new FixedSlotProbe(8, 64), Overrides = ConfigurationFactory.ParseString("runtime.node.gpu = h200"),
        });
        Assert.Equal(new NodeSlots(8, SlotKind.Gpu, 150_109_880_320), gpu.Slots);

        var e = Assert.Throws<HoconException>(() => NodeConfig.Build(new NodeOptions
        {
            SlotProbe = TwoCores, Overrides = ConfigurationFactory.ParseString("runtime.node.slot-memory = lots"),
        }));
        Assert.Contains("runtime.node.slot-memory", e.Message);
    }

    [Fact]
    public void A_node_without_the_worker_role_advertises_no_slots()
    {
        var node = NodeConfig.Build(new NodeOptions { Roles = ["coordinator"], Slots = "4", SlotProbe = TwoCores });
        Assert.Equal(0, node.Slots.Count);
        Assert.Contains("slots:0", node.Config.GetStringList("akka.cluster.roles"));
    }

    [Fact]
    public void Sqlite_connection_strings_point_into_the_data_folder()
    {
        using var dir = new TempDir();
        var c = NodeConfig.Build(new NodeOptions { ConfigFiles = [Repo.Hocon("persistence-sqlite.conf")], DataDir = dir.Path, SlotProbe = TwoCores }).Config;
        Assert.Equal($"Data Source={dir["journal.db"]}", c.GetString("akka.persistence.journal.sql.connection-string"));
        Assert.Equal($"Data Source={dir["snapshots.db"]}", c.GetString("akka.persistence.snapshot-store.sql.connection-string"));
        Assert.Equal("SQLite.MS", c.GetString("akka.persistence.journal.sql.provider-name"));
    }

    [Fact]
    public void Postgres_conf_reads_its_connection_string_from_runtime_postgres()
    {
        const string cs = "Host=db;Port=5432;Username=runtime;Password=s3cret;Database=runtime";
        var c = NodeConfig.Build(new NodeOptions
        {
            ConfigFiles = [Repo.Hocon("persistence-postgres.conf")],
            Environment = name => name == "RUNTIME_POSTGRES" ? cs : null,
            SlotProbe = TwoCores,
        }).Config;
        Assert.Equal("PostgreSQL.15", c.GetString("akka.persistence.journal.sql.provider-name"));
        Assert.Equal(cs, c.GetString("akka.persistence.journal.sql.connection-string"));
        Assert.Equal(cs, c.GetString("akka.persistence.snapshot-store.sql.connection-string"));
    }

    [Fact]
    public void Postgres_without_runtime_postgres_refuses_to_start_naming_the_key()
    {
        var e = Assert.Throws<HoconException>(() => NodeConfig.Build(new NodeOptions
        {
            ConfigFiles = [Repo.Hocon("persistence-postgres.conf")],
            Environment = _ => null,
            SlotProbe = TwoCores,
        }));
        Assert.StartsWith("akka.persistence.journal.sql.connection-string is empty for provider PostgreSQL.15", e.Message);
        Assert.Contains("RUNTIME_POSTGRES", e.Message);
    }

    [Theory]
    [InlineData("10.0.0.1:4053")]
    [InlineData("akka.tcp://other@10.0.0.1:4053")]
    [InlineData("akka.tcp://runtime@10.0.0.1")]
    public void Bad_seed_addresses_are_refused(string seed)
    {
        var e = Assert.Throws<HoconException>(() => NodeConfig.Build(new NodeOptions { Seeds = [seed], SlotProbe = TwoCores }));
        Assert.StartsWith("akka.cluster.seed-nodes", e.Message);
        Assert.Contains(seed, e.Message);
    }

    [Fact]
    public void Slot_roles_cannot_be_set_by_hand()
    {
        var e = Assert.Throws<HoconException>(() => NodeConfig.Build(new NodeOptions { Roles = ["worker", "slots:64"], SlotProbe = TwoCores }));
        Assert.Contains("--slots", e.Message);
    }

    [Fact]
    public void Bad_slot_option_is_refused_naming_the_option()
    {
        var e = Assert.Throws<HoconException>(() => NodeConfig.Build(new NodeOptions { Slots = "many", SlotProbe = TwoCores }));
        Assert.Equal("--slots must be auto or a whole number of slots >= 0 (got \"many\")", e.Message);
    }

    [Fact]
    public void Overrides_win_over_everything()
    {
        var node = NodeConfig.Build(new NodeOptions
        {
            Port = 5000,
            Overrides = ConfigurationFactory.ParseString("akka.remote.dot-netty.tcp.port = 0"),
            SlotProbe = TwoCores,
        });
        Assert.Equal(0, node.Config.GetInt("akka.remote.dot-netty.tcp.port"));
    }
}
