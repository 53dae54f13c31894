using Akka.Configuration;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cli.Finetune;

/// <summary>
/// The node `rt finetune` runs in its own process. Alone: every role, one worker slot per worker of the spec (each a
/// share of the CPU cores: runtime.worker.torch-threads = cores / slots), and its SQLite journal, log and lock in
/// <c>&lt;output&gt;/.runtime</c>. Joining a cluster: no role at all, so it hosts neither workers nor run coordinators;
/// it reaches them through proxies and only submits and follows the run, which the cluster's nodes train.
/// </summary>
public static class FinetuneNode
{
    /// <summary>The folder inside the run's output that holds the node's journal, log and lock.</summary>
    public const string StateFolder = ".runtime";

    public const string LogFile = "rt-finetune.log";

    public static string StateFolderOf(RunSpec spec) => Path.Combine(spec.Output, StateFolder);

    public static NodeOptions Options(RunSpec spec, FinetuneOptions options)
    {
        var state = StateFolderOf(spec);
        var logging = ConfigurationFactory.ParseString($"""
            # Akka's own lines go to a file, so the progress line owns the terminal.
            akka.loggers = ["{typeof(FileLogger).FullName}, {typeof(FileLogger).Assembly.GetName().Name}"]
            akka.stdout-loglevel = ERROR
            {FileLogger.PathKey} = {Quote(Path.Combine(state, LogFile))}
            # SIGINT/SIGTERM are rt finetune's (stop the run keeping its last step, then leave), not a shutdown hook's.
            akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
            """);
        return new NodeOptions
        {
            ConfigFiles = options.ConfigFiles,
            Seeds = options.Joins ? options.Join : [],
            // Alone it does everything; joining, it brings no capacity and coordinates nothing (runs stay on the cluster).
            Roles = options.Joins ? [] : null,
            Hostname = options.Hostname,
            Port = options.Port ?? 0,
            Slots = options.Joins ? null : (options.Slots ?? spec.Parallel.Workers).ToString(System.Globalization.CultureInfo.InvariantCulture),
            DataDir = state,
            Overrides = logging,
            RunDriver = TrainingRunDriver.Instance,
        };
    }

    static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
