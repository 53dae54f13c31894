using Runtime.Cluster.Driving;
using Xunit.Abstractions;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// Over a long run every worker holds the same number of tensors from step to step (nothing leaks per step), and the
/// data loaders keep ahead: stage 0 does not wait for its micro-batches.
/// </summary>
[Collection(TrainingClusterCollection.Name)]
public sealed class WorkerSteadyStateTests(TrainingCluster cluster, ITestOutputHelper output)
{
    [Fact]
    public async Task Live_tensors_stay_flat_on_every_worker_over_50_steps_and_stage_0_does_not_wait_for_data()
    {
        // Data-parallel 2 x pipeline 2: activations and gradients between stages, the gradient all-reduce between
        // replicas, the norm reduction, checkpoints every 25 steps; 50 steps run past the 64 rows into a second epoch.
        var spec = cluster.Run.Spec("steady-2x2", data: 2, pipeline: 2, more: ["train.max-steps=50", "checkpoint.every-steps=25"]);
        await cluster.Train(spec, timeoutSeconds: 240);

        var details = cluster.Progress.Of<StepDetails>("steady-2x2").OrderBy(d => d.Step).ToList();
        Assert.Equal(Enumerable.Range(1, 50).Select(s => (long)s), details.Select(d => d.Step));
        var workers = details[0].Workers.Select(w => w.Worker).ToList();
        Assert.Equal(4, workers.Count);
        foreach (var worker in workers)
        {
            // The first steps create lasting state (gradient buffers, AdamW moments); from step 3 on nothing is added.
            var counts = details.Skip(2).Select(d => d.Workers.Single(w => w.Worker == worker).LiveTensors).ToList();
            output.WriteLine($"{worker}: live tensors after steps 1, 2, 3..50: {details[0].Workers.Single(w => w.Worker == worker).LiveTensors}, " +
                             $"{details[1].Workers.Single(w => w.Worker == worker).LiveTensors}, {string.Join(" ", counts.Distinct())}");
            Assert.All(counts, c => Assert.Equal(counts[0], c));
        }

        // Stage 0 blocks for its micro-batches only before the first step's arrive: later steps' data was sent ahead.
        var stage0 = details.Skip(1).SelectMany(d => d.Workers.Where(w => w.Worker.Pipeline == 0)).ToList();
        double waited = stage0.Sum(w => w.Timings.DataWaitSeconds), stepped = stage0.Sum(w => w.Timings.Seconds);
        output.WriteLine($"stage 0 over steps 2..50: waited {waited * 1000:F1} ms for data in {stepped:F2} s of steps ({100 * waited / stepped:F2}%), " +
                         $"worst step {stage0.Max(w => w.Timings.DataWaitSeconds) * 1000:F2} ms");
        Assert.True(waited < 0.02 * stepped, $"stage 0 waited {waited:F3} s for data over {stepped:F2} s of steps");
    }
}
