using Runtime.Cluster.Driving;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Tests.Training;

/// <summary>Bad layouts are refused at submission, naming the key, before any worker, file or folder exists.</summary>
[Collection(TrainingClusterCollection.Name)]
public sealed class RunSubmissionTests(TrainingCluster cluster)
{
    [Theory]
    [InlineData("more-workers", "run.parallel", "parallel.data=8")]                  // 8 workers, 4 slots
    [InlineData("more-stages", "run.parallel.pipeline", "parallel.pipeline=5")]      // 5 stages, 4 layers
    [InlineData("tensor-4", "run.parallel.tensor", "parallel.tensor=4")]             // does not divide 2 kv heads
    [InlineData("tensor-3", "run.parallel.tensor", "parallel.tensor=3")]             // does not divide 4 heads either
    public async Task A_layout_that_does_not_fit_is_refused_before_anything_starts(string name, string key, string set)
    {
        var spec = cluster.Run.Spec(name, set);
        var e = await Assert.ThrowsAsync<RunSpecException>(() => cluster.Client.SubmitAsync(spec));
        Assert.Contains(e.Problems, p => p.Key == key);
        Assert.All(e.Problems, p => Assert.StartsWith(p.Key, p.ToString()));
        Assert.Equal(RunPhase.None, (await cluster.Client.StatusAsync(name)).Phase);
        Assert.False(Directory.Exists(spec.Output));
        Assert.Empty(cluster.Progress.Of<IRunProgress>(name));
    }

    [Fact]
    public async Task A_run_whose_memory_plan_does_not_fit_the_slots_is_refused_with_the_plan_and_force_starts_it()
    {
        // The node's 4 CPU slots share FixedSlotProbe's 16 GiB: 4 GiB each, a budget of 3.87 GB. The micro spec's plan
        // (a few MB) fits, as every other run on this node shows. Rows of up to a million tokens do not: the plan sizes
        // a micro-batch of two such rows (GBs of logits), though this data's rows have 16 tokens.
        Assert.Equal(new Runtime.Cluster.Hosting.NodeSlots(4, Runtime.Cluster.Hosting.SlotKind.Cpu, 4L << 30), cluster.Node.Slots);
        var spec = cluster.Run.Spec("memory-refused", "data.max-seq-length=1048576");
        var e = await Assert.ThrowsAsync<RunSpecException>(() => cluster.Client.SubmitAsync(spec));
        var problem = Assert.Single(e.Problems);
        // Activations dominate and the micro spec keeps every layer's (grad-checkpointing off): recompute is the first remedy.
        Assert.Equal("run.train.grad-checkpointing", problem.Key);
        Assert.StartsWith("run.train.grad-checkpointing: the run's memory plan does not fit a worker slot: each worker needs ", problem.Message);
        foreach (var category in new[] { "weights ", "trainable ", "gradients ", "optimizer ", "activations ", "reserve " })
            Assert.Contains(category, problem.Message);
        Assert.Contains($"over the budget of 3.87 GB (90% of the smallest slot: 4.29 GB, a CPU slot of {cluster.Node.Address})", problem.Message);
        Assert.Contains("run.admission.force = on", problem.Message);
        Assert.Equal(RunPhase.None, (await cluster.Client.StatusAsync("memory-refused")).Phase);
        Assert.False(Directory.Exists(spec.Output));
        Assert.Empty(cluster.Progress.Of<IRunProgress>("memory-refused"));

        // Forced, the same run is admitted and trains (its real rows are small).
        var forced = cluster.Run.Spec("memory-forced", "data.max-seq-length=1048576", "admission.force=on");
        Assert.Equal(6, (await cluster.Train(forced)).LastStep);
    }

    [Fact]
    public async Task The_progress_of_a_run_is_its_start_each_step_with_an_eta_its_checkpoints_and_its_end()
    {
        var spec = cluster.Run.Spec("progress", data: 1, pipeline: 1);
        var seen = new List<IRunProgress>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var status = await cluster.Client.RunAsync(spec, onProgress: p => { lock (seen) seen.Add(p); }, cancellationToken: timeout.Token);
        Assert.Equal(RunPhase.Completed, status.Phase);
        Assert.Equal(6, status.LastStep);
        List<IRunProgress> events;
        lock (seen) events = seen.ToList();
        var started = Assert.Single(events.OfType<TrainingStarted>());
        Assert.Equal((0L, 6L, 1), (started.ResumeStep, started.TotalSteps, started.Workers));
        var steps = events.OfType<StepProgress>().ToList();
        Assert.Equal([1L, 2, 3, 4, 5, 6], steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.True(s.Loss > 0 && s.TokensPerSecond > 0 && s.LabelledTokens == 8 * 15, $"step {s.Step}: {s}"));
        Assert.Equal(0, steps[^1].EtaSeconds);
        Assert.True(steps[0].EtaSeconds > 0);
        // The linear schedule from 1e-2 over 6 steps without warm-up: update k uses 1e-2 x (6 - (k - 1)) / 6.
        Assert.Equal(Enumerable.Range(1, 6).Select(k => 1e-2 * (6 - (k - 1)) / 6.0), steps.Select(s => s.LearningRate), new ToleranceComparer(1e-15));
        Assert.Equal([3L, 6], events.OfType<CheckpointSaved>().Select(c => c.Step));
        var finished = Assert.Single(events.OfType<RunFinished>());
        Assert.Equal(RunPhase.Completed, finished.Phase);
        Assert.Equal(Path.Combine(spec.Output, RunOutputs.AdapterFolder), finished.Output);
    }

    [Fact]
    public async Task A_run_without_free_slots_waits_for_capacity_and_starts_when_the_run_holding_them_ends()
    {
        // The first run takes all 4 slots and keeps them until the test stops it (so however fast this machine trains,
        // it is still running when the second arrives); the second (accepted: the cluster has 4 slots) must wait.
        var first = cluster.Run.Spec("capacity-first", data: 2, pipeline: 2, more: ["train.max-steps=100000", "checkpoint.every-steps=100000"]);
        var second = cluster.Run.Spec("capacity-second", data: 1, pipeline: 1, more: ["train.max-steps=3", "log.tensorboard=on"]);
        var firstId = await cluster.Client.SubmitAsync(first);
        await Support.TestNodes.Eventually(() => cluster.Progress.Of<TrainingStarted>(firstId).Count > 0, "the first run to start", 60);
        var running = cluster.Train(second);
        await Support.TestNodes.Eventually(() => cluster.Progress.Of<WaitingForCapacity>("capacity-second").Count > 0, "waiting for capacity", 60);
        // Still waiting while the first holds the slots: none of its workers was placed.
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.DoesNotContain(cluster.Progress.Of<PlacingWorkers>("capacity-second"), p => p.Ready > 0);

        Assert.True(await cluster.Client.StopAsync(firstId, "making room"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        Assert.Equal(RunPhase.Stopped, (await cluster.Client.WaitAsync(firstId, cancellationToken: timeout.Token)).Phase);
        await running;
        var waiting = cluster.Progress.Of<WaitingForCapacity>("capacity-second")[0];
        Assert.Equal((0, 1), (waiting.Ready, waiting.Workers));
        Assert.Equal(3, (await cluster.Client.StatusAsync("capacity-second")).LastStep);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(second.Output, RunOutputs.TensorBoardFolder), "events.out.tfevents.*"));
    }

    [Fact]
    public async Task Cancelling_a_run_checkpoints_its_last_step_stops_it_frees_its_slots_and_a_new_run_resumes_there()
    {
        // What Ctrl+C and `--resume` in `rt finetune` do: the step in flight finishes and is checkpointed (off the
        // every-10-steps schedule), the run is recorded as stopped, its workers go.
        var spec = cluster.Run.Spec("interrupted", data: 2, pipeline: 2, more: ["train.max-steps=40", "checkpoint.every-steps=10"]);
        using var cancel = new CancellationTokenSource();
        var status = await cluster.Client.RunAsync(spec, onProgress: p => { if (p is StepProgress { Step: 3 }) cancel.Cancel(); },
            cancellationToken: cancel.Token).WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Equal(RunPhase.Stopped, status.Phase);
        Assert.True(status.LastStep is >= 3 and < 10, $"the run went on to step {status.LastStep}");
        Assert.Equal(status.LastStep, status.LastCheckpoint!.Step);
        Assert.Equal(status.LastStep, Assert.Single(cluster.Progress.Of<CheckpointSaved>("interrupted")).Step);
        Assert.Equal(RunPhase.Stopped, cluster.Progress.Of<RunFinished>("interrupted").Single().Phase);

        // All four slots are free again: a run of four workers resumes from that checkpoint and finishes.
        var resumed = cluster.Run.Spec("interrupted-resumed", data: 2, pipeline: 2, more: ["train.max-steps=40", "checkpoint.every-steps=20", $"output={spec.Output}"]);
        var done = await cluster.Train(resumed, resumeFrom: "latest");
        Assert.Equal(40, done.LastStep);
        var started = Assert.Single(cluster.Progress.Of<TrainingStarted>("interrupted-resumed"));
        Assert.Equal(status.LastStep, started.ResumeStep);
    }

    sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
