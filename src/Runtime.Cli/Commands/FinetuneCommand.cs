using System.CommandLine;
using System.Runtime.InteropServices;
using Runtime.Cli.Finetune;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt finetune SPEC.conf`: trains a run spec with the cluster runtime, in an in-process node or (--join) on an
/// existing cluster, with a live progress line and a summary. Ctrl+C or SIGTERM stops it keeping the last step (a
/// checkpoint of it); again stops at once. A run whose memory plan does not fit the smallest worker slot is refused
/// before anything starts, naming the plan and the keys to change; --force starts it anyway. Exit codes: 0 done, 1 bad spec or input (every problem listed),
/// 3 the run failed, 130 stopped (interrupted; `--resume` continues).
/// </summary>
public static class FinetuneCommand
{
    public static Command Create()
    {
        var spec = new Argument<string>("SPEC") { Description = "Run spec (HOCON run { ... }), e.g. hocon/runs/quickstart.conf" };
        var sets = new Option<string[]>("--set")
        {
            Description = "Override a spec key, relative to run: --set train.lr=1e-4 (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var resume = new Option<string?>("--resume")
        {
            Description = "Continue from a committed checkpoint: latest (default) or a checkpoint folder",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var join = new Option<string[]>("--join")
        {
            Description = "Train on an existing cluster: its seed address(es), akka.tcp://runtime@HOST:PORT (repeatable); this process then hosts no workers",
            AllowMultipleArgumentsPerToken = true,
        };
        var runId = new Option<string?>("--run-id") { Description = "Run id (default: the spec's name, or name-2, name-3, ... when taken)" };
        var port = new Option<int?>("--port") { Description = "Cluster port of this process's node (default: any free port)" };
        var hostname = new Option<string?>("--hostname") { Description = "Address the cluster reaches this node at (with --join across machines)" };
        var slots = new Option<int?>("--slots") { Description = "Worker slots of the in-process node (default: the spec's data x pipeline x tensor)" };
        var force = new Option<bool>("--force")
        {
            Description = "Start even when the run's memory plan does not fit the smallest worker slot (sets run.admission.force = on)",
        };
        var config = new Option<string[]>("--config")
        {
            Description = "HOCON file(s) with node settings, e.g. runtime.worker.torch-threads",
            AllowMultipleArgumentsPerToken = true,
        };

        var command = new Command("finetune", "Fine-tune a model as a run spec says: live progress, the adapter in <output>/adapter; " +
                                              "Ctrl+C checkpoints and stops (exit 130), --resume continues");
        command.Arguments.Add(spec);
        foreach (var o in new Option[] { sets, resume, join, runId, port, hostname, slots, force, config }) command.Options.Add(o);

        CommandAction.Set(command, (parse, stdout) =>
        {
            if (parse.GetValue(slots) is < 1) throw new UsageException("--slots must be at least 1");
            if (parse.GetValue(join) is { Length: > 0 } && parse.GetValue(slots) is not null)
                throw new UsageException("--slots is for the in-process node; with --join the cluster's nodes bring the slots");
            var options = new FinetuneOptions
            {
                SpecPath = parse.GetValue(spec)!,
                Sets = parse.GetValue(sets) ?? [],
                // --resume alone means the latest checkpoint.
                Resume = parse.GetResult(resume) is null ? null : parse.GetValue(resume) ?? Cluster.Runs.ResumeCheckpoint.Latest,
                Join = parse.GetValue(join) ?? [],
                RunId = parse.GetValue(runId),
                Port = parse.GetValue(port),
                Hostname = parse.GetValue(hostname),
                Slots = parse.GetValue(slots),
                ConfigFiles = parse.GetValue(config) ?? [],
                Force = parse.GetValue(force),
            };
            bool interactive = ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected;
            var job = new FinetuneJob(options, stdout, parse.InvocationConfiguration.Error, interactive);
            using var stop = new CancellationTokenSource();
            using var stopNow = new CancellationTokenSource();
            using var signals = OnSignals(stop, stopNow);
            return job.RunAsync(new FinetuneInterrupt(stop.Token, stopNow.Token)).GetAwaiter().GetResult();
        });
        return command;
    }

    /// <summary>SIGINT/SIGTERM: the first stops keeping the last step, the second stops at once, a third kills as usual.</summary>
    static IDisposable OnSignals(CancellationTokenSource stop, CancellationTokenSource stopNow)
    {
        int received = 0;
        void Handle(PosixSignalContext context)
        {
            switch (Interlocked.Increment(ref received))
            {
                case 1:
                    context.Cancel = true;
                    stop.Cancel();
                    break;
                case 2:
                    context.Cancel = true;
                    stopNow.Cancel();
                    break;
            }
        }
        return new Registrations([PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)]);
    }

    sealed class Registrations(IDisposable[] registrations) : IDisposable
    {
        public void Dispose()
        {
            foreach (var r in registrations) r.Dispose();
        }
    }
}
