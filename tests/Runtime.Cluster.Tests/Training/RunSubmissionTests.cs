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
    [InlineData("tensor-2", "run.parallel.tensor", "parallel.tensor=2")]             // not supported yet
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

    sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
