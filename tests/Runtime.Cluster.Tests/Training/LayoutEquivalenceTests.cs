using Runtime.Cluster.Driving;
using Runtime.Cluster.Tests.Support;
using Runtime.Training.Checkpoints;
using Xunit.Abstractions;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// THE invariant: a run gives the same adapter whatever its layout, and the same as the plain single-worker loop.
/// One worker runs exactly the loop's operations, so it must match bitwise; so do pipelines (each stage accumulates
/// its micro-batches in the same order; measured: bitwise for 1F1B and GPipe). Data-parallel replicas sum the same
/// gradients in another order (each replica its own micro-batches, then the replicas), which changes the last bits
/// of the gradients; AdamW divides by the root of the second moment, so a rounding difference in a gradient element
/// near zero becomes a visible difference in its update. Measured over the 6 steps (max |a - e| / max |e| per
/// tensor): 4.0e-6 for data 2 (with or without pipeline 2), 1.3e-5 with LoRA dropout 0.3; asserted below 5e-5.
/// </summary>
[Collection(TrainingClusterCollection.Name)]
public sealed class LayoutEquivalenceTests(TrainingCluster cluster, ITestOutputHelper output)
{
    const double Bound = 5e-5;

    [Fact]
    public async Task One_worker_trains_bitwise_what_the_single_worker_loop_trains()
    {
        var spec = cluster.Run.Spec("eq-1x1", data: 1, pipeline: 1);
        await cluster.Train(spec);
        var adapter = MicroRun.Adapter(Path.Combine(spec.Output, RunOutputs.AdapterFolder));
        Assert.Equal(0, MicroRun.RelativeDifference(cluster.Yardstick, adapter));
        // Checkpoints every 3 steps, keep 2: both are there, and the final one is what the adapter was read from.
        Assert.Equal([3L, 6], CheckpointFolders.Committed(spec.Output).Select(c => c.Step));
        Assert.Equal(6, File.ReadAllLines(Path.Combine(spec.Output, "metrics.jsonl")).Length);
    }

    [Theory]
    [InlineData(2, 1, "1f1b")]
    [InlineData(1, 2, "1f1b")]
    [InlineData(1, 2, "gpipe")]
    [InlineData(2, 2, "1f1b")]
    public async Task Data_and_pipeline_parallel_layouts_train_the_same_adapter(int data, int pipeline, string schedule)
    {
        var spec = cluster.Run.Spec($"eq-{data}x{pipeline}-{schedule}", data, pipeline, schedule);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await cluster.Train(spec);
        var adapter = MicroRun.Adapter(Path.Combine(spec.Output, RunOutputs.AdapterFolder));
        double difference = MicroRun.RelativeDifference(cluster.Yardstick, adapter);
        output.WriteLine($"data {data} x pipeline {pipeline} ({schedule}): max relative difference to the loop {difference:E2} ({clock.Elapsed.TotalSeconds:F1} s)");
        Assert.True(difference <= Bound, $"adapter differs from the single-worker loop by {difference:E2} (bound {Bound:E0})");
        Assert.NotEqual(0, cluster.Yardstick.Values.Sum(v => v.Sum(Math.Abs))); // the adapters did train
    }

    [Fact]
    public async Task With_dropout_every_layout_draws_the_same_masks()
    {
        // LoRA dropout draws from (seed, step, global micro-batch): whichever worker runs a micro-batch draws alike.
        var one = cluster.Run.Spec("dropout-1x1", data: 1, pipeline: 1, more: ["lora.dropout=0.3"]);
        var four = cluster.Run.Spec("dropout-2x2", data: 2, pipeline: 2, more: ["lora.dropout=0.3"]);
        await cluster.Train(one);
        await cluster.Train(four);
        var expected = MicroRun.Adapter(Path.Combine(one.Output, RunOutputs.AdapterFolder));
        var actual = MicroRun.Adapter(Path.Combine(four.Output, RunOutputs.AdapterFolder));
        double difference = MicroRun.RelativeDifference(expected, actual);
        output.WriteLine($"dropout 0.3, data 2 x pipeline 2 against 1 worker: max relative difference {difference:E2}; " +
                         $"against the run without dropout {MicroRun.RelativeDifference(cluster.Yardstick, expected):E2}");
        Assert.True(difference <= Bound, $"adapters differ by {difference:E2}");
        Assert.True(MicroRun.RelativeDifference(cluster.Yardstick, expected) > 1e-3, "dropout changed nothing");
    }
}

[CollectionDefinition(Name)]
public sealed class TrainingClusterCollection : ICollectionFixture<TrainingCluster>
{
    public const string Name = "Training cluster";
}
