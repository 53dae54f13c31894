using System.CommandLine;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Hosting;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt node`: runs one cluster node until it leaves. SIGTERM or Ctrl+C leaves the cluster gracefully (shards handed
/// off) and exits 0; the exit code otherwise says why the node ended (<see cref="NodeExit"/>; 1 also for bad input).
/// </summary>
public static class NodeCommand
{
    public static Command Create()
    {
        var config = new Option<string[]>("--config")
        {
            Description = "HOCON file(s) with the node's settings (hocon/node.conf, seed.conf, ...); later files override earlier ones",
            AllowMultipleArgumentsPerToken = true,
        };
        var seeds = new Option<string[]>("--seed")
        {
            Description = "Seed node address, e.g. akka.tcp://runtime@10.0.0.1:4053 (repeatable; replaces the file's seed-nodes)",
            AllowMultipleArgumentsPerToken = true,
        };
        var roles = new Option<string?>("--roles") { Description = "Comma-separated cluster roles, e.g. worker,coordinator (replaces the file's roles)" };
        var hostname = new Option<string?>("--hostname") { Description = "Address other nodes reach this one at" };
        var port = new Option<int?>("--port") { Description = "TCP port for cluster traffic (0: any free port)" };
        var slots = new Option<string?>("--slots") { Description = "Worker slots to advertise: auto (GPUs, else CPU cores) or a number" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Folder for the node's own files (the SQLite journal)" };

        var command = new Command("node", "Run a Runtime cluster node until SIGTERM/Ctrl+C (graceful leave, exit 0)");
        foreach (var o in new Option[] { config, seeds, roles, hostname, port, slots, dataDir })
            command.Options.Add(o);

        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            var options = new NodeOptions
            {
                ConfigFiles = parse.GetValue(config) ?? [],
                Seeds = parse.GetValue(seeds) is { Length: > 0 } s ? s : null,
                Roles = parse.GetValue(roles)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Hostname = parse.GetValue(hostname),
                Port = parse.GetValue(port),
                Slots = parse.GetValue(slots),
                DataDir = parse.GetValue(dataDir),
                // A node trains the runs it coordinates (places workers, drives steps, commits checkpoints).
                RunDriver = Runtime.Cluster.Driving.TrainingRunDriver.Instance,
            };
            try
            {
                return Run(options, output).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is HoconException or IOException)
            {
                error.WriteLine($"rt node: {e.Message}");
                return (int)NodeExit.Failed;
            }
            catch (Exception e)
            {
                // Akka's own start-up failures (a port in use, a bad setting it reads itself): say what, not where.
                error.WriteLine($"rt node: {e.GetType().Name}: {e.Message}");
                return (int)NodeExit.Failed;
            }
        });
        return command;
    }

    static async Task<int> Run(NodeOptions options, TextWriter output)
    {
        var node = await RuntimeNode.StartAsync(options);
        using var signals = node.LeaveOnTerminationSignals(signal =>
            output.WriteLine($"{signal}: leaving the cluster (again to stop at once)"));
        var seeds = node.Cluster.Settings.SeedNodes;
        output.WriteLine($"runtime node {node.Address} starting; joining {(seeds.Count == 0 ? "itself (no seed nodes)" : string.Join(", ", seeds))}");
        var up = node.WhenUp.ContinueWith(t =>
        {
            if (t.IsCompletedSuccessfully)
                output.WriteLine(
                    $"runtime node {node.Address} is up: {node.Slots}, roles {string.Join(",", node.Cluster.SelfRoles.Order(StringComparer.Ordinal))}, data {node.Settings.Node.DataDir}");
        }, TaskScheduler.Default);
        await node.WhenTerminated;
        await up;
        var exit = node.Exit;
        output.WriteLine($"runtime node {node.Address} stopped: {exit switch
        {
            NodeExit.Left => "left the cluster",
            NodeExit.Downed => "downed by the cluster",
            NodeExit.JoinFailed => "could not join its seed nodes",
            _ => "terminated",
        }}");
        return (int)exit;
    }
}
