using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Runtime.Cluster.Hosting;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>
/// A Runtime cluster of real `rt node` processes on 127.0.0.1, as deploy/local would start it: a seed node that only
/// coordinates runs (no worker slots), and worker nodes of one slot each, so a run of W workers is spread over W
/// processes. Every node (and every `rt finetune --join` of a test) reads <see cref="ConfigFile"/>: hocon/node.conf
/// with this cluster's seed, one torch thread per worker (several processes share the cores) and failure handling
/// fast enough for a test (a killed node is downed within a few seconds). Processes are killed on dispose.
/// </summary>
public sealed class LoopbackCluster : IAsyncLifetime
{
    readonly ScratchFolder _folder = new();
    readonly List<(RtProcess Process, int Port)> _nodes = [];

    public string ConfigFile => _folder["cluster.conf"];

    public string DataDir => _folder["data"];

    public int SeedPort { get; private set; }

    public string Seed => $"akka.tcp://runtime@127.0.0.1:{SeedPort}";

    public IReadOnlyList<(RtProcess Process, int Port)> WorkerNodes => _nodes.Skip(1).Where(n => !n.Process.HasExited).ToList();

    public async Task InitializeAsync()
    {
        SeedPort = FreePort();
        File.WriteAllText(ConfigFile, $$"""
            include "{{Path.Combine(CliFixtures.RepositoryRoot(), "hocon", "node.conf")}}"
            akka.cluster.seed-nodes = ["{{Seed}}"]
            akka.cluster.down-removal-margin = 2s
            akka.cluster.split-brain-resolver.stable-after = 2s
            akka.cluster.failure-detector.acceptable-heartbeat-pause = 2s
            runtime.worker.torch-threads = 1
            runtime.driver.capacity-notice-after = 2s
            """);
        await Task.WhenAll(StartNode(SeedPort, "coordinator", slots: null), StartNode(FreePort(), "worker", slots: 1), StartNode(FreePort(), "worker", slots: 1));
    }

    /// <summary>Starts an `rt node` and waits until it is an Up member.</summary>
    public async Task<RtProcess> StartNode(int port, string roles, int? slots)
    {
        string[] args = ["node", "--config", ConfigFile, "--port", port.ToString(), "--roles", roles, "--data-dir", DataDir];
        var process = RtProcess.Start(_folder.Path, slots is { } n ? [.. args, "--slots", n.ToString()] : args);
        lock (_nodes) _nodes.Add((process, port));
        await process.WaitForLine(l => l.Contains(" is up: ", StringComparison.Ordinal), $"node :{port} to be up");
        return process;
    }

    public Task<RtProcess> StartWorkerNode() => StartNode(FreePort(), "worker", slots: 1);

    /// <summary>`rt finetune SPEC --join` this cluster, as a process of its own.</summary>
    public RtProcess Finetune(string spec, params string[] more) =>
        RtProcess.Start(_folder.Path, ["finetune", spec, "--join", Seed, "--config", ConfigFile, .. more]);

    /// <summary>
    /// The ports of the worker nodes holding <paramref name="runId"/>'s workers, as the cluster's sharding reports them
    /// to a node that joins just to ask (no roles: it only has proxies).
    /// </summary>
    public async Task<IReadOnlyList<int>> PortsHosting(string runId)
    {
        var probe = await RuntimeNode.StartAsync(new NodeOptions
        {
            ConfigFiles = [ConfigFile], Seeds = [Seed], Roles = [], Port = 0, DataDir = _folder["probe"],
            Overrides = Akka.Configuration.ConfigurationFactory.ParseString("akka.loglevel = WARNING"),
        });
        try
        {
            await probe.WhenUp.WaitAsync(TimeSpan.FromSeconds(30));
            for (int attempt = 0; ; attempt++)
            {
                var stats = await probe.RunWorkers.Ask<ClusterShardingStats>(new GetClusterShardingStats(TimeSpan.FromSeconds(5)), TimeSpan.FromSeconds(10));
                var ports = stats.Regions
                    .Where(r => r.Value.Stats.Keys.Any(shard => shard.StartsWith($"run/{runId}/", StringComparison.Ordinal)))
                    .Select(r => r.Key.Port ?? 0).Order().ToList();
                if (ports.Count > 0 || attempt == 20) return ports;
                await Task.Delay(250);
            }
        }
        finally
        {
            await probe.LeaveAsync();
        }
    }

    public RtProcess NodeAt(int port) => _nodes.Single(n => n.Port == port).Process;

    /// <summary>What the nodes printed, for a failing test.</summary>
    public string Logs => string.Join("\n", _nodes.Select(n => $"--- node :{n.Port}{(n.Process.HasExited ? " (exited)" : "")}\n{string.Join("\n", n.Process.Lines.TakeLast(40))}"));

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public Task DisposeAsync()
    {
        foreach (var (process, _) in _nodes) process.Dispose();
        _folder.Dispose();
        return Task.CompletedTask;
    }
}
