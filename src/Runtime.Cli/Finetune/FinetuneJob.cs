using System.Globalization;
using Runtime.Cli.Commands;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Training.Checkpoints;
using Runtime.Training.Planning;

namespace Runtime.Cli.Finetune;

/// <summary>
/// `rt finetune`'s work: read the spec, start this process's node (<see cref="FinetuneNode"/>: alone, or joined to a
/// cluster), submit the run (or continue it), show its progress, stop it on request keeping its last step, and sum it
/// up. The run itself is the cluster's: the same coordinator, driver and workers as on a 64-node deployment.
/// </summary>
public sealed class FinetuneJob(FinetuneOptions options, TextWriter output, TextWriter error, bool interactive)
{
    public const int ExitDone = 0;
    public const int ExitBadInput = 1;
    public const int ExitRunFailed = 3;
    public const int ExitInterrupted = 130;

    public async Task<int> RunAsync(FinetuneInterrupt interrupt)
    {
        var spec = RunSpecParser.Load(options.SpecPath, options.SpecSets);
        if (options.RunId is { } explicitId && !RunIds.IsValid(explicitId)) throw new UsageException($"--run-id \"{explicitId}\" {RunIds.Rule}");
        if (!options.Joins && options.Resume is null && CheckpointFolders.Committed(spec.Output) is { Count: > 0 } earlier)
            throw new UsageException(
                $"{spec.Output} already holds checkpoints of an earlier run ({string.Join(", ", earlier.Select(c => Path.GetFileName(c.Path)))}): " +
                "continue it with --resume, or remove the folder, or write elsewhere (--set output=DIR)");

        // Alone, the run gets this process's own slots: check the spec against them (files, layout, memory plan) as the
        // run coordinator will, before the node starts and makes the output's .runtime folder.
        if (!options.Joins) CheckAgainstOwnSlots(spec);
        using var outputLock = options.Joins ? null : OutputLock.Acquire(FinetuneNode.StateFolderOf(spec));
        var node = await StartNode(spec);
        try
        {
            if (interrupt.Stop.IsCancellationRequested) return Interrupted("before the run was submitted");
            var client = RunClient.For(node);
            var (runId, continuing) = await ChooseRunId(client, spec);
            if (interrupt.Stop.IsCancellationRequested) return Interrupted("before the run was submitted");
            // Followed before it is submitted: a joined client's subscription must reach the driver's node first.
            using var watch = await client.FollowAsync(runId);
            if (!continuing) await client.SubmitAsync(spec, runId, options.Resume);
            Describe(node, spec, runId, continuing);

            var view = new ProgressView(output, interactive, spec.Log.EverySteps);
            using var stop = interrupt.Stop.Register(() =>
            {
                view.Notice("stopping: the step in flight finishes and is checkpointed (Ctrl+C again to stop at once, at the last checkpoint)");
                Send(client.StopAsync(runId, "interrupted", checkpoint: true), view);
            });
            using var stopNow = interrupt.StopNow.Register(() =>
            {
                view.Notice("stopping now, at the last committed checkpoint");
                Send(client.StopAsync(runId, "interrupted twice", checkpoint: false), view);
            });
            var status = await watch.WaitAsync(view.OnProgress);
            view.Close();
            return Summarize(spec, status, view);
        }
        finally
        {
            await Leave(node);
        }
    }

    void CheckAgainstOwnSlots(RunSpec spec)
    {
        var slots = NodeConfig.Build(FinetuneNode.Options(spec, options)).Slots;
        RunSpecValidator.Validate(spec, new FixedSlotInventory(slots, "the in-process node"));
    }

    async Task<RuntimeNode> StartNode(RunSpec spec)
    {
        RuntimeNode node;
        try
        {
            node = await RuntimeNode.StartAsync(FinetuneNode.Options(spec, options));
        }
        catch (Exception e) when (e is not (UsageException or Cluster.Configuration.HoconException))
        {
            throw new UsageException($"the node could not start: {e.GetType().Name}: {e.Message}");
        }
        try
        {
            await node.WhenUp.WaitAsync(options.JoinTimeout);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            await Leave(node);
            throw new UsageException(options.Joins
                ? $"could not join the cluster at {string.Join(", ", options.Join)} within {options.JoinTimeout.TotalSeconds:F0} s (is an `rt node` listening there?)"
                : $"the in-process node did not come up: {e.Message}");
        }
        return node;
    }

    /// <summary>
    /// The run's id: --run-id, or the spec's name, or name-2, name-3, ...: the first the journal does not know, so each
    /// invocation is a run of its own (a resumed one too). Alone, a run the journal still has as active was left by a
    /// process that died; the journal's coordinator has just revived it. With --resume (latest) and the same spec it is
    /// the run to continue; otherwise it is stopped. Joined, active runs belong to someone and are never touched.
    /// </summary>
    async Task<(string Id, bool Continuing)> ChooseRunId(RunClient client, RunSpec spec)
    {
        var canonical = RunSpecHocon.Write(spec);
        bool Continues(RunStatus s) => !options.Joins && options.Resume == ResumeCheckpoint.Latest && s.Spec is { } old && RunSpecHocon.Write(old) == canonical;

        if (options.RunId is { } id)
        {
            var status = await client.StatusAsync(id);
            if (status.Phase == RunPhase.None) return (id, false);
            if (status.IsFinished || options.Joins || !Continues(status))
                throw new UsageException($"run {id} already exists ({Phase(status.Phase)}); choose another --run-id");
            return (id, true);
        }
        var name = spec.Name.Length > 58 ? spec.Name[..58] : spec.Name;
        for (int n = 1; ; n++)
        {
            var candidate = n == 1 ? spec.Name : string.Create(CultureInfo.InvariantCulture, $"{name}-{n}");
            var status = await client.StatusAsync(candidate);
            if (status.Phase == RunPhase.None) return (candidate, false);
            if (!status.IsFinished && !options.Joins)
            {
                if (Continues(status)) return (candidate, true);
                await client.StopAsync(candidate, "left active by an rt finetune that ended without stopping it");
            }
        }
    }

    void Describe(RuntimeNode node, RunSpec spec, string runId, bool continuing)
    {
        var p = spec.Parallel;
        var method = spec.Method == FineTuneMethod.Full ? "full fine-tuning" : $"{PlanNames.Method(spec.Method)} r {spec.Lora.R}";
        output.WriteLine($"run {runId}: {method} of {spec.Model}");
        output.WriteLine($"  {p.Workers} worker{(p.Workers == 1 ? "" : "s")} (data {p.Data} x pipeline {p.Pipeline} x tensor {p.Tensor}), " +
                         $"{spec.SamplesPerStep} samples a step, output {spec.Output}");
        output.WriteLine(options.Joins
            ? $"  on the cluster of {string.Join(", ", options.Join)} (this node {node.Address} only submits and follows)"
            : $"  on an in-process node ({node.Slots}); journal and log in {FinetuneNode.StateFolderOf(spec)}");
        if (continuing) output.WriteLine($"  continuing run {runId}, left active by an earlier rt finetune, from its last checkpoint");
        else if (options.Resume is { } resume) output.WriteLine($"  resuming from {(resume == ResumeCheckpoint.Latest ? "the latest checkpoint" : resume)}");
        output.Flush();
    }

    int Summarize(RunSpec spec, RunStatus status, ProgressView view)
    {
        switch (status.Phase)
        {
            case RunPhase.Completed:
            {
                var result = Path.Combine(spec.Output, spec.Method == FineTuneMethod.Full ? RunOutputs.ModelFolder : RunOutputs.AdapterFolder);
                double seconds = view.TrainingSeconds;
                output.WriteLine($"done: run {status.RunId}, {status.LastStep} steps, {ProgressView.Duration(seconds)} of training");
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  loss         {(view.FirstStep is { } first ? $"{first.Loss:F4} (step {first.Step}) -> " : "")}{status.LastLoss:F4} (step {status.LastStep})"));
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  tokens       {view.LabelledTokens:N0} labelled, {view.LabelledTokens / Math.Max(seconds, 1e-9):N0} labelled tokens/s"));
                output.WriteLine($"  {(spec.Method == FineTuneMethod.Full ? "model  " : "adapter")}      {result}");
                var kept = CheckpointFolders.Committed(spec.Output);
                output.WriteLine($"  checkpoints  {(kept.Count == 0 ? "none" : string.Join(", ", kept.Select(c => Path.GetFileName(c.Path))))} in {spec.Output}");
                SummarizeMemory(view);
                output.Flush();
                return ExitDone;
            }
            case RunPhase.Stopped:
            {
                var at = status.LastCheckpoint is { } c ? $"checkpoint {c.Step} ({Path.GetDirectoryName(c.ManifestPath)})" : "no checkpoint yet";
                output.WriteLine($"stopped: run {status.RunId} after step {status.LastStep} ({status.Reason}); {at}");
                SummarizeMemory(view);
                if (status.LastCheckpoint is not null)
                    output.WriteLine($"  continue with: rt finetune {options.SpecPath}{string.Concat(options.Sets.Select(s => " --set " + s))}{(options.Force ? " --force" : "")} --resume");
                output.Flush();
                return ExitInterrupted;
            }
            default:
                error.WriteLine($"error: run {status.RunId} {Phase(status.Phase)}: {status.Reason}");
                return ExitRunFailed;
        }
    }

    /// <summary>Each worker's last memory report (after the run's last step, or the latest one a stopped run made).</summary>
    void SummarizeMemory(ProgressView view)
    {
        foreach (var m in view.Memory)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {ProgressView.MemoryLine(m)} (step {m.Step})"));
    }

    int Interrupted(string when)
    {
        output.WriteLine($"stopped {when}");
        return ExitInterrupted;
    }

    static string Phase(RunPhase phase) => phase.ToString().ToLowerInvariant();

    void Send(Task<bool> stop, ProgressView view) =>
        stop.ContinueWith(t => view.Notice($"the stop request failed: {t.Exception!.GetBaseException().Message}"), TaskContinuationOptions.OnlyOnFaulted);

    static async Task Leave(RuntimeNode node)
    {
        try
        {
            await node.LeaveAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await node.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            await node.System.Terminate();
        }
    }
}
