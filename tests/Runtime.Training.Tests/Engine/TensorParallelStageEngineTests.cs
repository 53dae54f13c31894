using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

/// <summary>
/// Tensor-parallel shards driven by <see cref="StageEngine"/>, each rank on its own thread, with gradient
/// checkpointing (the layers' regions all-reduce again while the backward recomputes them): one step of several
/// micro-batches gives the unsharded engine's loss and gradients (sliced as the placements say), with the same LoRA
/// dropout draws.
/// </summary>
[Collection(TorchTrainingCollection.Name)]
public class TensorParallelStageEngineTests
{
    const int Tp = 2;

    static readonly LoraConfig Lora = new(rank: 4, alpha: 8, dropout: 0.25, LoraConfig.AllTargets);

    sealed record StepResult(double Loss, Dictionary<string, (TensorParallelPlacement Placement, double[] Gradient)> Gradients);

    static StepResult OneStep(LlamaSlice model, bool recompute, bool packed = false)
    {
        var batches = MicroModel.Batches(packed: packed); // every rank its own reader over the same samples
        var layout = new BatchLayout(2, 3, 1);
        using var engine = new StageEngine(model, recompute);
        var plan = batches.StepAt(0, layout);
        long stepTokens = batches.LabelledTokens(plan);
        double lossSum = 0;
        foreach (var mb in batches.ReplicaMicroBatches(plan, 0))
            using (mb)
            {
                var result = engine.Forward(mb.Index, mb.InputIds, mb.Positions, mb.SegmentIds, mb.Labels,
                    new StepRandomness(7, 0, mb.Index), 1.0 / stepTokens);
                lossSum += result.LossSum;
                Assert.Null(engine.Backward(mb.Index));
            }
        TensorParallelPlacements.AllReducePartialGradients(model);
        var placements = TensorParallelPlacements.For(model);
        var gradients = MicroModel.Gradients(engine.TrainableParameters)
            .ToDictionary(g => g.Key, g => (placements[g.Key], g.Value!));
        return new StepResult(lossSum / stepTokens, gradients);
    }

    /// <summary>A non-zero B for every adapter (PEFT's zero B would leave A without a gradient), each rank its part.</summary>
    static void RandomizeLoraB(LlamaSlice model)
    {
        var draw = new LlamaInitializer(seed: 3, std: 0.2);
        using var noGrad = no_grad();
        foreach (var (_, projection) in LoraInjector.Targets(model, Lora))
        {
            using var b = draw.Create(projection.ModulePath + ".lora_B.weight", [projection.FullOutFeatures, Lora.Rank],
                ScalarType.Float32, projection.LoraBSlice);
            projection.LoraB!.copy_(b);
        }
    }

    static void Prepare(LlamaSlice model, bool lora)
    {
        if (!lora) return;
        LoraInjector.Inject(model, Lora, seed: 13);
        RandomizeLoraB(model);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Shards_recomputing_their_layers_train_like_the_unsharded_engine(bool lora)
    {
        var config = MicroModel.Config();
        StepResult expected;
        using (var full = MicroModel.Create(config))
        {
            Prepare(full, lora);
            expected = OneStep(full, recompute: false);
        }

        var group = LocalTensorParallelGroup.Create(Tp, TimeSpan.FromSeconds(60));
        var ranks = RunRanks(group, member =>
        {
            var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(member.Rank, Tp);
            using var shard = new LlamaInitializer(11, MicroModel.InitStd).CreateSlice(config, spec, MicroModel.Options(), member);
            Prepare(shard, lora);
            return OneStep(shard, recompute: true);
        });

        foreach (var (rank, result) in ranks.Select((r, i) => (i, r)))
        {
            Assert.Equal(expected.Loss, result.Loss, 1e-6);
            Assert.Equal(expected.Gradients.Keys.Order(), result.Gradients.Keys.Order());
            foreach (var (name, (placement, gradient)) in result.Gradients)
            {
                var whole = expected.Gradients[name].Gradient;
                MicroModel.AssertClose(Part(whole, placement), gradient, 1e-5, $"rank {rank}, {name} ({placement})");
            }
        }
        Assert.Contains(ranks[0].Gradients.Values, g => g.Placement.IsSharded);
        Assert.Contains(ranks[0].Gradients.Values, g => g.Gradient.Any(v => v != 0));
    }

    /// <summary>
    /// Vocabulary-parallel shards: each rank's head computes only its vocabulary columns of the logits and the engine's
    /// loss is the vocab-parallel cross entropy, yet the step's loss (bitwise the same on every rank) and gradients
    /// (embedding and head rows included) are the unsharded engine's.
    /// </summary>
    [Theory]
    [InlineData(false, false, false)]
    [InlineData(false, true, true)]
    [InlineData(true, false, true)]
    public void Vocabulary_parallel_shards_recomputing_their_layers_train_like_the_unsharded_engine(bool lora, bool tied, bool packed)
    {
        var config = MicroModel.Config(tied);
        StepResult expected;
        using (var full = MicroModel.Create(config))
        {
            Prepare(full, lora);
            expected = OneStep(full, recompute: false, packed);
        }

        var group = LocalTensorParallelGroup.Create(Tp, TimeSpan.FromSeconds(60));
        var ranks = RunRanks(group, member =>
        {
            var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(member.Rank, Tp, vocabularyParallel: true);
            using var shard = new LlamaInitializer(11, MicroModel.InitStd).CreateSlice(config, spec, MicroModel.Options(), member);
            Assert.NotNull(shard.VocabularyParallelGroup);
            Prepare(shard, lora);
            return OneStep(shard, recompute: true, packed);
        });

        foreach (var (rank, result) in ranks.Select((r, i) => (i, r)))
        {
            Assert.True(Math.Abs(result.Loss - expected.Loss) <= 1e-6 * expected.Loss, $"rank {rank}: loss {result.Loss:R}, unsharded {expected.Loss:R}");
            Assert.Equal(BitConverter.DoubleToInt64Bits(ranks[0].Loss), BitConverter.DoubleToInt64Bits(result.Loss));
            Assert.Equal(expected.Gradients.Keys.Order(), result.Gradients.Keys.Order());
            foreach (var (name, (placement, gradient)) in result.Gradients)
                MicroModel.AssertClose(Part(expected.Gradients[name].Gradient, placement), gradient, 1e-5, $"rank {rank}, {name} ({placement})");
            if (!lora)
                foreach (var name in new[] { "model.embed_tokens.weight", "lm_head.weight" }.Where(result.Gradients.ContainsKey))
                    Assert.Equal(new TensorSlice(0, rank * MicroModel.Vocab / Tp, MicroModel.Vocab / Tp), result.Gradients[name].Placement.Slice);
        }
        Assert.Equal(lora ? 0 : tied ? 1 : 2, ranks[0].Gradients.Keys.Count(k => k is "model.embed_tokens.weight" or "lm_head.weight"));
    }

    /// <summary>The elements of a row-major full tensor that a placement's slice covers, in order.</summary>
    static double[] Part(double[] full, TensorParallelPlacement placement)
    {
        if (placement.Slice is not { } s) return full;
        long inner = placement.FullShape.Skip(s.Dim + 1).Aggregate(1L, (a, b) => a * b);
        long outer = placement.FullShape.Take(s.Dim).Aggregate(1L, (a, b) => a * b);
        long along = placement.FullShape[s.Dim];
        var part = new List<double>();
        for (long o = 0; o < outer; o++)
            for (long i = s.Start; i < s.Start + s.Length; i++)
                for (long k = 0; k < inner; k++)
                    part.Add(full[(o * along + i) * inner + k]);
        return [.. part];
    }

    static T[] RunRanks<T>(IReadOnlyList<LocalTensorParallelGroup> group, Func<LocalTensorParallelGroup, T> body)
    {
        var results = new T[group.Count];
        var failures = new Exception?[group.Count];
        var threads = group.Select(member => new Thread(() =>
        {
            try { results[member.Rank] = body(member); }
            catch (Exception e) { failures[member.Rank] = e; member.Abort(); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        var cause = failures.FirstOrDefault(f => f is not null and not OperationCanceledException) ?? failures.FirstOrDefault(f => f is not null);
        if (cause is not null) throw new AggregateException($"a tensor-parallel rank failed: {cause.Message}", cause);
        return results;
    }
}
