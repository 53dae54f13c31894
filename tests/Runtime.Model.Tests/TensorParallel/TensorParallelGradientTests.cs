using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// Backward through tensor-parallel shards: every parameter's gradient (after the documented all-reduce of the
/// partial ones) and the input gradient are the unsharded model's, sliced as the placements say; replicated
/// parameters get bitwise the same gradient on every rank.
/// </summary>
public sealed class TensorParallelGradientTests
{
    static readonly LoraConfig Lora = new(rank: 4, alpha: 8, dropout: 0, LoraConfig.AllTargets);

    sealed record RankResult(
        float[] Logits, float[]? InputGradient, Dictionary<string, (TensorParallelPlacement Placement, float[] Gradient)> Parameters,
        int Reduced, float[]? PartialBeforeReduce);

    static void AssertMatchesUnsharded(LlamaSlice full, (float[] Logits, float[]? InputGradient) expected, RankResult[] ranks,
        double tolerance)
    {
        var fullGradients = full.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (rank, result) in ranks.Select((r, i) => (i, r)))
        {
            AssertClose(expected.Logits, result.Logits, 1e-5, $"rank {rank} logits");
            if (expected.InputGradient is not null)
                AssertClose(expected.InputGradient, result.InputGradient!, tolerance, $"rank {rank} input gradient");
            Assert.Equal(fullGradients.Keys.Order(), result.Parameters.Keys.Order());
            foreach (var (name, (placement, gradient)) in result.Parameters)
                AssertClose(Part(fullGradients[name], placement.Slice), gradient, tolerance, $"rank {rank} gradient of {name} ({placement})");
        }
        // Replicated parameters stay identical only if their gradients are bitwise the same everywhere.
        foreach (var (name, (placement, gradient)) in ranks[0].Parameters.Where(p => !p.Value.Placement.IsSharded))
            for (int rank = 1; rank < ranks.Length; rank++)
                AssertBitwiseEqual(gradient, ranks[rank].Parameters[name].Gradient, $"rank {rank}'s gradient of replicated {name}");
        for (int rank = 1; rank < ranks.Length; rank++)
            if (ranks[0].InputGradient is { } g) AssertBitwiseEqual(g, ranks[rank].InputGradient!, $"rank {rank}'s input gradient");
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(4, true)]
    [InlineData(2, false)]
    [InlineData(4, false)]
    public void Full_fine_tuning_gradients_are_the_unsharded_ones_sliced(int tp, bool withEmbedding)
    {
        var config = MicroConfig();
        var spec = withEmbedding ? LlamaSliceSpec.Whole(config) : new LlamaSliceSpec(0, 2, HasEmbedding: false, HasHead: true);
        using var full = Full(config, spec);
        var expected = ForwardBackward(full, null);

        var ranks = TensorParallelRanks.Run(tp, group =>
        {
            using var shard = Shard(config, group, spec);
            var (logits, inputGradient) = ForwardBackward(shard, null);
            int reduced = TensorParallelPlacements.AllReducePartialGradients(shard);
            return new RankResult(logits, inputGradient, Gradients(shard), reduced, null);
        });

        // Full fine-tuning has no partial gradients: sharded weights' are local, replicated ones' already identical.
        Assert.All(ranks, r => Assert.Equal(0, r.Reduced));
        Assert.All(ranks[0].Parameters.Values, p => Assert.False(p.Placement.GradientNeedsAllReduce));
        Assert.Contains(ranks[0].Parameters, p => p.Key.EndsWith("norm.weight", StringComparison.Ordinal) && !p.Value.Placement.IsSharded);
        AssertMatchesUnsharded(full, expected, ranks, 1e-5);
    }

    [Theory]
    [InlineData(2, 0.0)]
    [InlineData(4, 0.0)]
    [InlineData(2, 0.3)]
    [InlineData(4, 0.3)]
    public void Lora_gradients_after_the_partial_all_reduce_are_the_unsharded_ones_sliced(int tp, double dropout)
    {
        var config = MicroConfig();
        var lora = new LoraConfig(Lora.Rank, Lora.Alpha, dropout, Lora.Targets);
        var randomness = new StepRandomness(Seed: 5, Step: 3, MicroBatch: 1);
        const string probe = "model.layers.0.self_attn.q_proj.lora_A.weight";
        using var full = Full(config);
        LoraInjector.Inject(full, lora, seed: 9);
        RandomizeLoraB(full, lora);
        var expected = ForwardBackward(full, randomness);

        var ranks = TensorParallelRanks.Run(tp, group =>
        {
            using var shard = Shard(config, group);
            LoraInjector.Inject(shard, lora, seed: 9);
            RandomizeLoraB(shard, lora);
            var (logits, _) = ForwardBackward(shard, randomness);
            var before = Values(shard.named_parameters().Single(p => p.name == probe).parameter.grad!);
            int reduced = TensorParallelPlacements.AllReducePartialGradients(shard);
            return new RankResult(logits, null, Gradients(shard), reduced, before);
        });

        // Per layer: A of q, k, v, gate, up (column-parallel) and B of o, down (row-parallel).
        Assert.All(ranks, r => Assert.Equal(7 * config.NumHiddenLayers, r.Reduced));
        Assert.All(ranks[0].Parameters.Keys, name => Assert.True(LoraInjector.IsAdapterParameter(name), name));
        // Before the all-reduce a column-parallel A's gradient is only this rank's share.
        using (var fullProbe = full.named_parameters().Single(p => p.name == probe).parameter.grad!.alias())
        {
            var whole = Values(fullProbe);
            Assert.Contains(Enumerable.Range(0, whole.Length), i => Math.Abs(whole[i] - ranks[0].PartialBeforeReduce![i]) > 1e-3 * Math.Max(1, Math.Abs(whole[i])));
        }
        AssertMatchesUnsharded(full, expected, ranks, 1e-5);
    }

    [Fact]
    public void A_shards_initial_adapter_is_its_part_of_the_whole_models()
    {
        var config = MicroConfig();
        using var full = Full(config);
        LoraInjector.Inject(full, Lora, seed: 31);
        var whole = full.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

        var ranks = TensorParallelRanks.Run(4, group =>
        {
            using var shard = Shard(config, group);
            LoraInjector.Inject(shard, Lora, seed: 31);
            var placements = TensorParallelPlacements.For(shard);
            return LoraInjector.AdapterTensors(shard).ToDictionary(t => t.Name, t => (placements[t.Name], Values(t.Tensor), t.Tensor.shape));
        });
        foreach (var (rank, adapters) in ranks.Select((r, i) => (i, r)))
        {
            Assert.Equal(2 * 7 * config.NumHiddenLayers, adapters.Count);
            foreach (var (name, (placement, values, shape)) in adapters)
            {
                Assert.Equal(placement.LocalShape, shape);
                AssertBitwiseEqual(Part(whole[name], placement.Slice), values, $"rank {rank}'s initial {name}");
            }
        }
    }

    [Fact]
    public void Placements_name_each_parameters_part_of_the_full_tensor()
    {
        var config = MicroConfig();
        var group = LocalTensorParallelGroup.Create(2);
        using var source = Llama.MicroLlama.Source(config);
        // Building a shard communicates nothing, so rank 1 can be built alone.
        using var shard = LlamaLoader.Load(source, config, LlamaSliceSpec.Whole(config).WithTensorParallel(1, 2), Options(), group[1]);
        LoraInjector.Inject(shard, Lora, seed: 1);
        var placements = TensorParallelPlacements.For(shard);

        void Expect(string name, long[] fullShape, Runtime.Model.IO.TensorSlice? slice, bool partial = false)
        {
            var p = placements[name];
            Assert.Equal(fullShape, p.FullShape);
            Assert.Equal(slice, p.Slice);
            Assert.Equal(partial, p.GradientNeedsAllReduce);
        }
        const string l = "model.layers.1.";
        // q: 8 heads x 6 = 48 rows, rank 1 holds heads 4..7; k, v: 4 kv heads x 6 = 24 rows, rank 1 holds kv heads 2, 3.
        Expect(l + "self_attn.q_proj.weight", [48, 32], new(0, 24, 24));
        Expect(l + "self_attn.k_proj.weight", [24, 32], new(0, 12, 12));
        Expect(l + "self_attn.v_proj.weight", [24, 32], new(0, 12, 12));
        Expect(l + "self_attn.o_proj.weight", [32, 48], new(1, 24, 24));
        Expect(l + "mlp.gate_proj.weight", [48, 32], new(0, 24, 24));
        Expect(l + "mlp.up_proj.weight", [48, 32], new(0, 24, 24));
        Expect(l + "mlp.down_proj.weight", [32, 48], new(1, 24, 24));
        Expect(l + "self_attn.q_proj.lora_A.weight", [4, 32], null, partial: true);
        Expect(l + "self_attn.q_proj.lora_B.weight", [48, 4], new(0, 24, 24));
        Expect(l + "self_attn.o_proj.lora_A.weight", [4, 48], new(1, 24, 24));
        Expect(l + "self_attn.o_proj.lora_B.weight", [32, 4], null, partial: true);
        Expect(l + "mlp.down_proj.lora_A.weight", [4, 48], new(1, 24, 24));
        Expect(l + "mlp.down_proj.lora_B.weight", [32, 4], null, partial: true);
        Expect(l + "input_layernorm.weight", [32], null);
        Expect("model.embed_tokens.weight", [61, 32], null);
        Expect("model.norm.weight", [32], null);
        Expect("lm_head.weight", [61, 32], null);
        foreach (var (name, parameter) in shard.named_parameters())
            Assert.Equal(placements[name].LocalShape, parameter.shape);
        Assert.True(placements["model.norm.weight"].IsPrimaryCopy(0));
        Assert.False(placements["model.norm.weight"].IsPrimaryCopy(1));
        Assert.True(placements[l + "mlp.down_proj.weight"].IsPrimaryCopy(1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Repeated_steps_leave_each_ranks_live_tensor_count_unchanged(int tp)
    {
        var config = MicroConfig();
        var lora = new LoraConfig(4, 8, 0.2, LoraConfig.AllTargets);
        var leaks = TensorParallelRanks.Run(tp, group =>
        {
            using var shard = Shard(config, group);
            LoraInjector.Inject(shard, lora, seed: 2);
            RandomizeLoraB(shard, lora);
            void Step(int i)
            {
                ForwardBackward(shard, new StepRandomness(1, i, 0));
                TensorParallelPlacements.AllReducePartialGradients(shard);
                shard.zero_grad();
            }
            Step(0);
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 1; i <= 3; i++) Step(i);
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
        });
        Assert.All(leaks, leaked => Assert.Equal(0, leaked));
    }
}
