using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Configuration;
using Runtime.Cluster.Hosting;

namespace Runtime.Cluster.Tests.Support;

/// <summary>Real nodes for tests: loopback, any free port, quiet logs, slots as the test says.</summary>
public static class TestNodes
{
    /// <summary>RT_TEST_LOGLEVEL=INFO (or DEBUG) shows what the nodes do, for a failing test.</summary>
    public static readonly Config Quiet = ConfigurationFactory.ParseString($$"""
        akka.loglevel = {{Environment.GetEnvironmentVariable("RT_TEST_LOGLEVEL") ?? "WARNING"}}
        akka.stdout-loglevel = WARNING
        akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
        """);

    /// <summary>Options for a node that joins <paramref name="seeds"/> (none: itself) and keeps its files in <paramref name="dataDir"/>.</summary>
    public static NodeOptions Options(string dataDir, int slots, params string[] seeds) => new()
    {
        Seeds = seeds,
        Slots = slots.ToString(),
        DataDir = dataDir,
        Overrides = Quiet,
        SlotProbe = new FixedSlotProbe(0, 2),
        Environment = _ => null,
    };

    public static async Task<RuntimeNode> StartUp(NodeOptions options)
    {
        var node = await RuntimeNode.StartAsync(options);
        await node.WhenUp.WaitAsync(TimeSpan.FromSeconds(30));
        return node;
    }

    /// <summary>Whether the shard region currently runs the entity.</summary>
    public static bool Hosts(IActorRef region, string entityId)
    {
        var state = region.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TimeSpan.FromSeconds(5)).GetAwaiter().GetResult();
        return state.Shards.Any(s => s.EntityIds.Contains(entityId));
    }

    /// <summary>Polls until <paramref name="condition"/> holds; fails naming <paramref name="what"/> after <paramref name="seconds"/>.</summary>
    public static async Task Eventually(Func<bool> condition, string what, double seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out after {seconds} s waiting for {what}");
            await Task.Delay(50);
        }
    }
}
