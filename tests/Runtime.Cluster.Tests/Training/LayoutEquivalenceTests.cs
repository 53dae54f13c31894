using Runtime.Cluster.Driving;
using Runtime.Cluster.Tests.Support;
using Runtime.Training.Checkpoints;
using Xunit.Abstractions;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// THE invariant: a run gives the same adapter whatever its layout, and the same as the plain single-worker loop.
/// One worker runs exactly the loop's operations, so it must match bitwise; other layouts sum the same gradients in
/// another order (replicas' micro-batches are summed per replica, then across replicas; stages' squared norms are
/// summed per stage), so they match within fp32 rounding, measured here and bounded at 1e-5 of each tensor's largest
/// value (see the report in each test's output).
/// </summary>
[Collection(TrainingClusterCollection.Name)]
public sealed class LayoutEquivalenceTests(TrainingCluster cluster, ITestOutputHelper output)
{
    const double Bound = 1e-5;

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
}

[CollectionDefinition(Name)]
public sealed class TrainingClusterCollection : ICollectionFixture<TrainingCluster>
{
    public const string Name = "Training cluster";
}
