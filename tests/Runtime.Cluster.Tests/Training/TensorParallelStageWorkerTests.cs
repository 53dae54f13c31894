using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Driving;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Cluster.Workers;
using Runtime.Model.Llama;
using Runtime.Model.TensorParallel;
using Xunit.Abstractions;
using static TorchSharp.torch;
using ShardingWorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// Two tensor-parallel <see cref="StageWorker"/>s of one stage, each on a thread of its own over in-process channels
/// (what two workers on one node do, without actors), fed by hand the micro-batches a data loader would send. After
/// optimizer steps every replicated parameter is bitwise the same on both ranks: the partial LoRA gradients were summed
/// over the ranks, the complete ones were identical already, the norm and the update are computed alike.
/// </summary>
public sealed class TensorParallelStageWorkerTests(ITestOutputHelper output) : IDisposable
{
    const int Steps = 3;
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("lora")]
    [InlineData("full")]
    public void Replicated_parameters_stay_bitwise_identical_across_tensor_parallel_ranks(string method)
    {
        var run = new MicroRun(_dir["micro"]);
        var spec = run.Spec($"tp-ranks-{method}", "parallel.tensor=2", $"method={method}", "train.lr=1e-3");
        var ranks = TrainTwoRanks(spec);

        var replicated = ranks[0].Where(p => !p.Value.Placement.IsSharded).Select(p => p.Key).ToList();
        var needReduction = replicated.Where(n => ranks[0][n].Placement.GradientNeedsAllReduce).ToList();
        output.WriteLine($"{method}: {replicated.Count} replicated trainable tensors ({needReduction.Count} with partial gradients), " +
                         $"{ranks[0].Count - replicated.Count} sharded");
        Assert.NotEmpty(replicated);
        if (method == "lora") Assert.Equal(replicated, needReduction); // LoRA A of q k v gate up, LoRA B of o and down
        else Assert.Contains("model.norm.weight", replicated);
        foreach (var name in replicated)
        {
            Assert.True(ranks[0][name].Bytes.SequenceEqual(ranks[1][name].Bytes), $"{name} differs between tensor-parallel ranks after {Steps} steps");
            Assert.False(ranks[0][name].Bytes.SequenceEqual(ranks[0][name].Initial), $"{name} did not train");
        }
        // The sharded parts are each rank's own.
        Assert.All(ranks[0].Where(p => p.Value.Placement.IsSharded), p =>
            Assert.NotEqual(p.Value.Placement.Slice!.Value.Start, ranks[1][p.Key].Placement.Slice!.Value.Start));
    }

    sealed record Trained(TensorParallelPlacement Placement, byte[] Initial, byte[] Bytes);

    /// <summary>Runs <see cref="Steps"/> steps on ranks 0 and 1 of the one stage; each rank's trainable tensors by name.</summary>
    static Dictionary<string, Trained>[] TrainTwoRanks(RunSpec spec)
    {
        var timeout = TimeSpan.FromSeconds(60);
        var router = new TensorRouter();
        var transport = new InProcessTransport(router);
        var ids = Enumerable.Range(0, 2).Select(t => new ShardingWorkerId(spec.Name, 0, 0, t)).ToArray();
        var channels = ids.Select(id =>
        {
            var self = id.ToChannel();
            var inbox = router.OpenInbox(self);
            return new WorkerChannels(self, inbox, transport, timeout,
                (kind, members) => new DirectCollectiveGroup(kind, members, self, inbox, transport, timeout));
        }).ToArray();

        // What replica 0's loader sends for each step, to both ranks.
        var labelled = new long[Steps + 1];
        using (var data = SharedTrainingData.Acquire(spec.Data.Path, spec.Model, RunRecipe.DataOptions(spec)))
        {
            var layout = RunRecipe.Layout(spec);
            for (int step = 1; step <= Steps; step++)
            {
                var plan = data.Data.StepAt((step - 1) * layout.GlobalBatch, layout);
                labelled[step] = data.Data.LabelledTokens(plan);
                foreach (var microBatch in plan.ForReplica(0))
                {
                    using var scope = NewDisposeScope();
                    var batch = data.Data.Collator.Collate(microBatch);
                    foreach (var id in ids)
                        foreach (var (part, tensor) in new[] { (BatchPart.InputIds, batch.InputIds), (BatchPart.Labels, batch.Labels), (BatchPart.Positions, batch.Positions) })
                            transport.Send(id.ToChannel(), BatchTags.For(0, step, batch.Index, part, spec.Name, 0), tensor.clone());
                }
            }
        }

        var results = new Dictionary<string, Trained>[2];
        var failures = new Exception?[2];
        var threads = ids.Select(id => new Thread(() =>
        {
            try
            {
                using var worker = new StageWorker(id, 0, spec, LlamaSliceSpec.Whole(MicroRun.Config), Steps, null, channels[id.Tensor]);
                var initial = worker.Parameters.ToDictionary(p => p.Name, p => ChannelBytes(p.Parameter));
                for (int step = 1; step <= Steps; step++) worker.RunStep(step, labelled[step]);
                results[id.Tensor] = worker.Parameters.ToDictionary(p => p.Name,
                    p => new Trained(worker.Placements[p.Name], initial[p.Name], ChannelBytes(p.Parameter)));
            }
            catch (Exception e)
            {
                failures[id.Tensor] = e;
                channels[id.Tensor].Inbox.Cancel();
                channels[1 - id.Tensor].Inbox.Cancel(); // the other rank waits for this one: release it
            }
        }) { Name = $"tp rank {id.Tensor}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        router.Dispose();
        // The rank that failed first is the cause; the other only saw its wait cancelled.
        var failure = failures.FirstOrDefault(f => f is not null and not OperationCanceledException) ?? failures.FirstOrDefault(f => f is not null);
        if (failure is not null) throw new Xunit.Sdk.XunitException($"a rank failed: {failure}");
        return results;
    }

    static byte[] ChannelBytes(Tensor t) => Runtime.Cluster.Tests.Channels.ChannelTestKit.Bytes(t);
}
