using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// Vocabulary-parallel shards of the micro model (vocabulary 256): each rank's local logits are its columns of the
/// unsharded logits, the vocab-parallel loss is the unsharded loss, and every parameter's gradient (embedding and head
/// rows included, tied or not) is the unsharded gradient sliced as the placements say, with no gradient all-reduce.
/// </summary>
public sealed class VocabularyParallelGradientTests
{
    const int Vocab = 256;

    public static LlamaConfig VocabConfig(bool tied) => MicroConfig(tied) with { VocabSize = Vocab };

    static readonly int[][] TokenRows = [Llama.MicroLlama.RandomTokens(11, 31, Vocab), Llama.MicroLlama.RandomTokens(11, 32, Vocab)];

    /// <summary>The tokens as labels with a few -100 (the prompt of row 0, one token of row 1).</summary>
    static Tensor LabelsOf(int[][] rows)
    {
        var labels = rows.Select(r => r.Select(x => (long)x).ToArray()).ToArray();
        labels[0][1] = labels[0][2] = labels[0][3] = CausalLmLoss.IgnoreIndex;
        labels[1][6] = CausalLmLoss.IgnoreIndex;
        return tensor(labels.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);
    }

    /// <summary>Two packed rows: row 0 holds segments of 4 and 7 tokens, row 1 one of 11.</summary>
    static (Tensor Positions, Tensor Segments) Packed() => (
        Llama.MicroLlama.Rows([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6], [.. Enumerable.Range(0, 11)]),
        Llama.MicroLlama.Rows([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [.. Enumerable.Repeat(0, 11)]));

    internal sealed record StepResult(
        float[] Logits, float Loss, long Count, float[]? InputGradient,
        Dictionary<string, (TensorParallelPlacement Placement, float[] Gradient)> Parameters, int Reduced);

    /// <summary>
    /// Forward (token ids, or <see cref="TpMicroLlama.Hidden"/> as a leaf for a slice without the embedding), the loss
    /// as the training engine computes it (<see cref="CausalLmLoss.Compute(Tensor, Tensor, ITensorParallelGroup?)"/>
    /// with the slice's vocabulary group), backward.
    /// </summary>
    internal static StepResult Step(LlamaSlice model, int[][] tokenRows, bool packed = false)
    {
        using var scope = NewDisposeScope();
        var tokens = Llama.MicroLlama.Rows(tokenRows);
        var labels = LabelsOf(tokenRows);
        var (positions, segments) = packed ? Packed() : (AttentionContext.SequentialPositions(2, 11), null);
        var input = model.Spec.HasEmbedding ? tokens : Hidden(model.Config).requires_grad_(true);
        using var context = model.CreateContext(positions, segments);
        var logits = model.call(input, context);
        var (sum, count) = CausalLmLoss.Compute(logits, labels, model.VocabularyParallelGroup);
        sum.backward();
        int reduced = TensorParallelPlacements.AllReducePartialGradients(model);
        return new StepResult(Values(logits), sum.ToSingle(), count, model.Spec.HasEmbedding ? null : Values(input.grad!),
            Gradients(model), reduced);
    }

    static void AssertMatchesUnsharded(StepResult expected, StepResult[] ranks, LlamaSlice full, string what)
    {
        int tp = ranks.Length;
        var fullGradients = full.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!);
        using var fullLogits = tensor(expected.Logits, [2, 11, Vocab]);
        foreach (var (rank, r) in ranks.Select((r, i) => (i, r)))
        {
            var columns = new TensorSlice(2, rank * Vocab / tp, Vocab / tp);
            AssertClose(Part(fullLogits, columns), r.Logits, 1e-5, $"{what}: rank {rank}'s local logits");
            Assert.Equal(expected.Count, r.Count);
            Assert.True(Math.Abs(r.Loss - expected.Loss) <= 1e-6 * Math.Abs(expected.Loss),
                $"{what}: rank {rank}'s loss {r.Loss:R}, unsharded {expected.Loss:R}");
            if (expected.InputGradient is { } g) AssertClose(g, r.InputGradient!, 1e-5, $"{what}: rank {rank}'s input gradient");
            Assert.Equal(fullGradients.Keys.Order(), r.Parameters.Keys.Order());
            foreach (var (name, (placement, gradient)) in r.Parameters)
                AssertClose(Part(fullGradients[name], placement.Slice), gradient, 1e-5, $"{what}: rank {rank}'s gradient of {name} ({placement})");
            foreach (var name in r.Parameters.Keys.Where(LlamaTensorNames.IsVocabularyTensor))
            {
                var placement = r.Parameters[name].Placement;
                Assert.False(placement.GradientNeedsAllReduce, name);
                Assert.Equal(new long[] { Vocab, 32 }, placement.FullShape);
                Assert.Equal(new TensorSlice(0, rank * Vocab / tp, Vocab / tp), placement.Slice);
                Assert.True(placement.IsPrimaryCopy(rank), $"{name} on rank {rank}");
            }
        }
        for (int rank = 1; rank < tp; rank++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(ranks[0].Loss), BitConverter.SingleToInt32Bits(ranks[rank].Loss));
            foreach (var (name, (placement, gradient)) in ranks[0].Parameters.Where(p => !p.Value.Placement.IsSharded))
                AssertBitwiseEqual(gradient, ranks[rank].Parameters[name].Gradient, $"{what}: rank {rank}'s gradient of replicated {name}");
        }
    }

    [Theory]
    [InlineData(2, false, false)]
    [InlineData(4, false, false)]
    [InlineData(2, true, false)]
    [InlineData(4, true, true)]
    [InlineData(2, false, true)]
    public void Full_fine_tuning_loss_and_gradients_are_the_unsharded_ones(int tp, bool tied, bool packed)
    {
        var config = VocabConfig(tied);
        using var full = Full(config);
        var expected = Step(full, TokenRows, packed);

        var ranks = TensorParallelRanks.Run(tp, group =>
        {
            using var shard = Shard(config, group, vocabularyParallel: true);
            Assert.Same(group, shard.VocabularyParallelGroup);
            if (tied) Assert.Same(shard.Model.EmbedTokens!.Weight, shard.LmHead!.Weight);
            return Step(shard, TokenRows, packed);
        });
        AssertMatchesUnsharded(expected, ranks, full, $"tp {tp}, {(tied ? "tied" : "untied")}{(packed ? ", packed" : "")}");
        Assert.Contains(ranks[0].Parameters.Keys, LlamaTensorNames.IsVocabularyTensor);
        // Complete gradients everywhere: the embedding and head rows need no all-reduce, like every full weight.
        Assert.All(ranks, r => Assert.Equal(0, r.Reduced));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_head_stage_without_the_embedding_splits_its_head_the_same_way(bool tied)
    {
        var config = VocabConfig(tied);
        var spec = new LlamaSliceSpec(1, 2, HasEmbedding: false, HasHead: true);
        using var full = Full(config, spec);
        var expected = Step(full, TokenRows);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, spec, vocabularyParallel: true);
            Assert.Equal(new long[] { Vocab / 2, 32 }, shard.LmHead!.Weight.shape);
            return Step(shard, TokenRows);
        });
        AssertMatchesUnsharded(expected, ranks, full, $"head stage, {(tied ? "tied" : "untied")}");
        Assert.Contains("lm_head.weight", ranks[1].Parameters.Keys);
    }

    [Fact]
    public void Ids_that_all_fall_in_rank_0s_rows_leave_rank_1s_embedding_rows_without_gradient()
    {
        var config = VocabConfig(tied: false);
        int[][] lowIds = [Llama.MicroLlama.RandomTokens(11, 41, Vocab / 2), Llama.MicroLlama.RandomTokens(11, 42, Vocab / 2)];
        using var full = Full(config);
        var expected = Step(full, lowIds);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, vocabularyParallel: true);
            return Step(shard, lowIds);
        });
        AssertMatchesUnsharded(expected, ranks, full, "ids in rank 0's rows");
        Assert.All(ranks[1].Parameters[LlamaTensorNames.EmbedTokens].Gradient, g => Assert.Equal(0f, g));
        Assert.Contains(ranks[0].Parameters[LlamaTensorNames.EmbedTokens].Gradient, g => g != 0);
        // Every label is one of rank 0's ids, yet rank 1's head rows still get the softmax part of the gradient.
        Assert.Contains(ranks[1].Parameters[LlamaTensorNames.LmHead].Gradient, g => g != 0);
    }

    [Fact]
    public void Lora_gradients_are_the_unsharded_ones_with_the_vocabulary_split()
    {
        var config = VocabConfig(tied: true);
        var lora = new LoraConfig(4, 8, 0, LoraConfig.AllTargets);
        using var full = Full(config);
        LoraInjector.Inject(full, lora, seed: 9);
        RandomizeLoraB(full, lora);
        var expected = Step(full, TokenRows);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, vocabularyParallel: true);
            LoraInjector.Inject(shard, lora, seed: 9);
            RandomizeLoraB(shard, lora);
            return Step(shard, TokenRows);
        });
        // The adapters' partial gradients (A of column-parallel, B of row-parallel projections) and nothing else.
        Assert.All(ranks, r => Assert.Equal(7 * config.NumHiddenLayers, r.Reduced));
        AssertMatchesUnsharded(expected, ranks, full, "LoRA");
        Assert.All(ranks[0].Parameters.Keys, name => Assert.True(LoraInjector.IsAdapterParameter(name), name));
    }

    [Fact]
    public void Bf16_shards_match_the_unsharded_model_within_bf16_rounding()
    {
        var config = VocabConfig(tied: true);
        var options = Options(ScalarType.BFloat16);
        using var full = Full(config, options: options);
        var expected = Step(full, TokenRows);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, options: options, vocabularyParallel: true);
            return Step(shard, TokenRows);
        });
        using var fullLogits = tensor(expected.Logits, [2, 11, Vocab]);
        foreach (var (rank, r) in ranks.Select((r, i) => (i, r)))
        {
            // Partial sums inside the layers are rounded to bf16 before their reduction: a few bf16 ulps.
            AssertClose(Part(fullLogits, new TensorSlice(2, rank * Vocab / 2, Vocab / 2)), r.Logits, 3e-2, $"rank {rank}'s bf16 logits");
            Assert.True(Math.Abs(r.Loss - expected.Loss) <= 1e-2 * expected.Loss, $"rank {rank}'s bf16 loss {r.Loss:R}, unsharded {expected.Loss:R}");
            var embedding = r.Parameters[LlamaTensorNames.EmbedTokens];
            Assert.Equal(new TensorSlice(0, rank * Vocab / 2, Vocab / 2), embedding.Placement.Slice);
            Assert.Contains(embedding.Gradient, g => g != 0);
        }
        Assert.Equal(BitConverter.SingleToInt32Bits(ranks[0].Loss), BitConverter.SingleToInt32Bits(ranks[1].Loss));
    }

    [Fact]
    public void Repeated_steps_leave_each_ranks_live_tensor_count_unchanged()
    {
        var config = VocabConfig(tied: true);
        var leaks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, vocabularyParallel: true);
            Step(shard, TokenRows);
            shard.zero_grad();
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 3; i++)
            {
                Step(shard, TokenRows);
                shard.zero_grad();
            }
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
        });
        Assert.All(leaks, leaked => Assert.Equal(0, leaked));
    }
}
