using Akka.Cluster.SBR;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Configuration;

namespace Runtime.Cluster.Tests.Configuration;

public class ReferenceConfigTests
{
    [Fact]
    public void Reference_settings_read_back_as_typed_settings()
    {
        var s = RuntimeSettings.From(RuntimeConfig.Reference);
        Assert.Null(s.Node.Slots); // auto
        Assert.Equal(1, s.Node.CoresPerCpuSlot);
        Assert.Equal(Path.GetFullPath(".runtime"), s.Node.DataDir);
        Assert.Equal(new CommandHostSettings("127.0.0.1", 9110), s.Cmd);
        Assert.Equal(new ShardingSettings(100, "coordinator", "worker"), s.Sharding);
        Assert.Equal(new RunCoordinatorSettings(100, TimeSpan.FromMinutes(2)), s.RunCoordinator);
        Assert.Equal(new SqliteFileSettings("journal.db", "snapshots.db"), s.Sqlite);
    }

    [Fact]
    public void Split_brain_resolver_is_keep_majority_with_the_documented_timings()
    {
        var config = RuntimeConfig.Reference;
        // Read the way Akka reads it, over Akka.Cluster's own defaults (what the cluster extension adds at start).
        var clusterDefaults = Akka.Configuration.ConfigurationFactory.FromResource(
            "Akka.Cluster.Configuration.Cluster.conf", typeof(Akka.Cluster.Cluster).Assembly);
        var sbr = new SplitBrainResolverSettings(config.WithFallback(clusterDefaults));
        Assert.Equal("keep-majority", sbr.DowningStrategy);
        Assert.Equal(TimeSpan.FromSeconds(10), sbr.DowningStableAfter);
        Assert.Equal(TimeSpan.FromSeconds(10), config.GetTimeSpan("akka.cluster.down-removal-margin"));
        Assert.Equal(TimeSpan.FromSeconds(5), config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
    }

    [Fact]
    public void Sharding_remembers_entities_in_the_sql_journal()
    {
        var config = RuntimeConfig.Reference;
        Assert.True(config.GetBoolean("akka.cluster.sharding.remember-entities"));
        Assert.Equal("eventsourced", config.GetString("akka.cluster.sharding.remember-entities-store"));
        Assert.Equal("ddata", config.GetString("akka.cluster.sharding.state-store-mode"));
        Assert.Equal("akka.persistence.journal.sql", config.GetString("akka.cluster.sharding.journal-plugin-id"));
        Assert.Equal("akka.persistence.snapshot-store.sql", config.GetString("akka.cluster.sharding.snapshot-plugin-id"));
        Assert.Equal(config.GetString("akka.persistence.journal.plugin"), config.GetString("akka.cluster.sharding.journal-plugin-id"));
    }

    [Fact]
    public void Persistence_defaults_to_sqlite_with_one_writer()
    {
        var config = RuntimeConfig.Reference;
        Assert.Equal("SQLite.MS", config.GetString("akka.persistence.journal.sql.provider-name"));
        Assert.Equal(1, config.GetInt("akka.persistence.journal.sql.parallelism"));
        Assert.True(config.GetBoolean("akka.persistence.journal.sql.auto-initialize"));
        Assert.Equal("SQLite.MS", config.GetString("akka.persistence.snapshot-store.sql.provider-name"));
        Assert.Equal("cluster", config.GetString("akka.actor.provider"));
        Assert.Equal("127.0.0.1", config.GetString("akka.remote.dot-netty.tcp.hostname"));
    }

    [Fact]
    public void Bad_settings_are_errors_naming_the_key()
    {
        var bad = Akka.Configuration.ConfigurationFactory.ParseString("runtime.sharding.max-shards = lots").WithFallback(RuntimeConfig.Reference);
        var e = Assert.Throws<HoconException>(() => RuntimeSettings.From(bad));
        Assert.Contains("runtime.sharding.max-shards", e.Message);
        var slots = Akka.Configuration.ConfigurationFactory.ParseString("runtime.node.slots = -2").WithFallback(RuntimeConfig.Reference);
        Assert.Contains("runtime.node.slots", Assert.Throws<HoconException>(() => RuntimeSettings.From(slots)).Message);
    }

    [Fact]
    public void The_channels_settings_in_reference_conf_are_those_the_channels_define()
    {
        var reference = RuntimeConfig.Reference;
        Assert.Equal(TensorChannelSettings.Create(ChannelsConfig.Default), TensorChannelSettings.Create(reference));
        foreach (var key in new[] { "maximum-frame-size", "send-buffer-size", "receive-buffer-size" })
            Assert.Equal(ChannelsConfig.Default.GetByteSize("akka.remote.dot-netty.tcp." + key), reference.GetByteSize("akka.remote.dot-netty.tcp." + key));
        Assert.Equal("runtime-tensor", reference.GetString("akka.actor.serialization-bindings.\"Runtime.Cluster.Channels.Remote.ITensorWireMessage, Runtime.Cluster\""));
    }

    [Fact]
    public void Worker_and_driver_settings_read_back_and_bad_ones_name_the_key()
    {
        var s = RuntimeSettings.From(RuntimeConfig.Reference);
        Assert.Equal(new WorkerSettings(null, "runtime.worker.dispatcher"), s.Worker);
        Assert.Equal(new DriverSettings(TimeSpan.FromSeconds(15), 10, 1), s.Driver);
        Assert.Equal(1, s.Worker.ThreadsFor(cores: 2, slots: 4));
        Assert.Equal(4, s.Worker.ThreadsFor(cores: 32, slots: 8));
        Assert.Equal(3, (s.Worker with { TorchThreads = 3 }).ThreadsFor(cores: 32, slots: 8));
        var bad = Akka.Configuration.ConfigurationFactory.ParseString("runtime.worker.torch-threads = 0").WithFallback(RuntimeConfig.Reference);
        Assert.Contains("runtime.worker.torch-threads", Assert.Throws<HoconException>(() => RuntimeSettings.From(bad)).Message);
    }
}
