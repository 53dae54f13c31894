using Runtime.Cli.Finetune;
using Runtime.Cluster.Tests.Training;
using Runtime.Training.Checkpoints;
using Xunit.Abstractions;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>`rt finetune` with its in-process node: bad input, a whole run, Ctrl+C and --resume.</summary>
[Collection(FinetuneCollection.Name)]
public sealed class FinetuneCommandTests(FinetuneFixture fixture, ITestOutputHelper log)
{
    MicroSpec Specs => fixture.Specs;

    [Fact]
    public void A_spec_with_problems_exits_1_naming_every_key_before_anything_starts()
    {
        var path = Specs.Write("bad-keys");
        File.AppendAllText(path, "run.train.lr = -1\nrun.lora.r = 0\nrun.train.lerning-rate = 1\n");
        var (exit, _, err) = Rt.Invoke("finetune", path, "--set", "parallel.schedule=zigzag");
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", err);
        foreach (var key in new[] { "run.train.lr", "run.lora.r", "run.train.lerning-rate", "run.parallel.schedule" })
            Assert.Contains(key, err);
        Assert.False(Directory.Exists(Specs.Output("bad-keys")), "a node was started (its journal folder exists)");
    }

    [Fact]
    public void A_spec_the_coordinator_refuses_exits_1_naming_every_key()
    {
        // Parsed fine; the run coordinator finds both problems against the files and the model.
        var (exit, stdout, err) = Rt.Invoke("finetune", Specs.Write("refused"), "--set", "parallel.pipeline=5", "--set", $"data.path={fixture.Folder}/none.jsonl");
        Assert.True(exit == 1, $"exit {exit}: {stdout}{err}");
        Assert.Contains("run.parallel.pipeline = 5 exceeds the model's 4 layers", err);
        Assert.Contains("run.data.path", err);
        Assert.False(Directory.Exists(Specs.Adapter("refused")));
    }

    [Fact]
    public void A_run_too_big_for_its_slots_exits_1_with_the_plan_before_anything_starts_and_force_trains_it()
    {
        // A node file that gives each of the in-process node's slots 64 KiB: the micro run's plan does not fit.
        var config = Path.Combine(fixture.Folder, "small-slots.conf");
        File.WriteAllText(config, "runtime.node.slot-memory = 64KiB\n");
        var spec = Specs.Write("too-big");
        var (exit, stdout, err) = Rt.Invoke("finetune", spec, "--config", config);
        log.WriteLine(stdout + err);
        Assert.True(exit == 1, $"exit {exit}: {stdout}{err}");
        Assert.Contains("error: too-big: run.train.grad-checkpointing: the run's memory plan does not fit a worker slot: each worker needs ", err);
        foreach (var category in new[] { "weights ", "trainable ", "gradients ", "optimizer ", "activations ", "reserve " })
            Assert.Contains(category, err);
        Assert.Contains("over the budget of 59.0 kB (90% of the smallest slot: 65.5 kB, a CPU slot of the in-process node)", err);
        Assert.Contains("run.admission.force = on (rt finetune --force)", err);
        Assert.False(Directory.Exists(Specs.Output("too-big")), "a node was started (its journal folder exists)");

        var forced = Rt.Invoke("finetune", spec, "--config", config, "--force");
        log.WriteLine(forced.Out + forced.Err);
        Assert.True(forced.Exit == 0, $"exit {forced.Exit}: {forced.Out}{forced.Err}");
        Assert.Contains("done: run too-big, 6 steps", forced.Out);
    }

    [Fact]
    public void A_run_prints_each_step_its_checkpoints_and_a_summary_writes_its_adapter_and_is_not_restarted_by_accident()
    {
        var spec = Specs.Write("whole");
        var (exit, stdout, err) = Rt.Invoke("finetune", spec);
        log.WriteLine(stdout + err);
        Assert.True(exit == 0, $"exit {exit}: {stdout}{err}");

        var lines = stdout.Split('\n');
        Assert.Equal(Enumerable.Range(1, 6).Select(k => $"step {k}/6"),
            lines.Where(l => l.StartsWith("step ", StringComparison.Ordinal)).Select(l => l.Split("  ")[0]));
        Assert.Contains(lines, l => l.StartsWith("checkpoint 3 saved: ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("checkpoint 6 saved: ", StringComparison.Ordinal));
        Assert.Contains("done: run whole, 6 steps", stdout);
        Assert.Contains($"adapter      {Specs.Adapter("whole")}", stdout);
        Assert.Contains("checkpoints  checkpoint-3, checkpoint-6", stdout);

        // Memory: the worker's line right after step 1 (measured vs planned, by category), its last report in the summary.
        int step1 = Array.FindIndex(lines, l => l.StartsWith("step 1/6", StringComparison.Ordinal));
        Assert.StartsWith("memory 0.0.0: measured ", lines[step1 + 1]);
        Assert.Single(lines, l => l.StartsWith("memory ", StringComparison.Ordinal));
        var summary = Assert.Single(lines, l => l.StartsWith("  memory 0.0.0: measured ", StringComparison.Ordinal));
        Assert.Matches(@" MB vs planned \d+\.\d+ MB .*\(weights \d+\.\d+/\d+\.\d+, trainable \d+\.\d+/\d+\.\d+, gradients \d+\.\d+/\d+\.\d+, optimizer \d+\.\d+/\d+\.\d+", summary);
        Assert.EndsWith("(step 6)", summary.TrimEnd());

        // The adapter trained (LoRA's B starts at zero), and the journal and the log are in the output's .runtime.
        var adapter = MicroRun.Adapter(Specs.Adapter("whole"));
        Assert.Contains(adapter, t => t.Key.Contains("lora_B", StringComparison.Ordinal) && t.Value.Any(v => v != 0));
        // Its checkpoints say what they train: `rt export` turns the last one into the same adapter.
        var exported = Path.Combine(Specs.Output("whole"), "exported");
        var export = Rt.Invoke("export", "--checkpoint", Path.Combine(Specs.Output("whole"), "checkpoint-6"), "--out", exported);
        Assert.True(export.Exit == 0, export.Err);
        Assert.Equal(0, MicroRun.RelativeDifference(adapter, MicroRun.Adapter(exported)));
        var state = Path.Combine(Specs.Output("whole"), FinetuneNode.StateFolder);
        Assert.True(File.Exists(Path.Combine(state, "journal.db")));
        Assert.Contains("Cluster Node", File.ReadAllText(Path.Combine(state, FinetuneNode.LogFile)));

        // The same command again would train over the checkpoints: refused, pointing at --resume.
        var again = Rt.Invoke("finetune", spec);
        Assert.Equal(1, again.Exit);
        Assert.Contains("already holds checkpoints of an earlier run (checkpoint-3, checkpoint-6)", again.Err);
        Assert.Contains("--resume", again.Err);
    }

    [Fact]
    public void Resume_without_a_checkpoint_exits_1()
    {
        var (exit, stdout, err) = Rt.Invoke("finetune", Specs.Write("nothing-to-resume"), "--resume");
        Assert.True(exit == 1, $"exit {exit}: {stdout}{err}");
        Assert.Contains("resume: ", err);
        Assert.Contains("holds no committed checkpoint", err);
    }

    [Fact]
    public async Task Interrupted_runs_checkpoint_their_last_step_exit_130_and_resume_bitwise_to_the_uninterrupted_result()
    {
        // The uninterrupted run: 30 steps, checkpoints every 10.
        var whole = Rt.Invoke("finetune", Specs.Write("straight", steps: 30, checkpointEvery: 10));
        Assert.True(whole.Exit == 0, whole.Out + whole.Err);

        // The same training, interrupted (what Ctrl+C does) once step 3 is reported.
        var spec = Specs.Write("interrupted", steps: 30, checkpointEvery: 10);
        using var stop = new CancellationTokenSource();
        var output = new LineWriter(line => { if (line.StartsWith("step 3/30", StringComparison.Ordinal)) stop.Cancel(); });
        var error = new StringWriter();
        var job = new FinetuneJob(new FinetuneOptions { SpecPath = spec }, output, error, interactive: false);
        int exit = await job.RunAsync(new FinetuneInterrupt(stop.Token, CancellationToken.None)).WaitAsync(TimeSpan.FromSeconds(120));
        log.WriteLine(output.ToString() + error);
        Assert.Equal(FinetuneJob.ExitInterrupted, exit);
        var stopped = output.ToString().Split('\n').Single(l => l.StartsWith("stopped: run interrupted after step ", StringComparison.Ordinal));
        long step = long.Parse(stopped.Split(' ')[5], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(step, 3, 29);
        // The step it stopped after was checkpointed, off the every-10 schedule unless it happened to be 10 or 20.
        Assert.Equal(step, CheckpointFolders.Committed(Specs.Output("interrupted")).Last().Step);
        Assert.Contains("continue with: rt finetune " + spec + " --resume", output.ToString());
        Assert.False(Directory.Exists(Specs.Adapter("interrupted")));

        // --resume continues from there as a run of its own, and ends with the uninterrupted run's adapter, bit for bit.
        var resumed = Rt.Invoke("finetune", spec, "--resume");
        log.WriteLine(resumed.Out + resumed.Err);
        Assert.True(resumed.Exit == 0, resumed.Out + resumed.Err);
        Assert.Contains("run interrupted-2: ", resumed.Out);
        Assert.Contains($"training: resuming after step {step} of 30", resumed.Out);
        Assert.Equal(0, MicroRun.RelativeDifference(MicroRun.Adapter(Specs.Adapter("straight")), MicroRun.Adapter(Specs.Adapter("interrupted"))));
    }
}
