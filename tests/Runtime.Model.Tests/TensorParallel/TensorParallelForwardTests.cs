using Runtime.Model.Llama;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// Tensor-parallel shards, run together on their own threads, compute the unsharded model's outputs; size 1 is
/// today's model bit for bit; splits that would cut a head are refused.
/// </summary>
public sealed class TensorParallelForwardTests
{
    [Theory]
    [InlineData(2, AttentionImplementation.ScaledDotProduct)]
    [InlineData(4, AttentionImplementation.ScaledDotProduct)]
    [InlineData(4, AttentionImplementation.Eager)]
    public void Shards_compute_the_unsharded_logits_and_agree_bitwise(int tp, AttentionImplementation attention)
    {
        var config = MicroConfig();
        var options = Options(requiresGrad: false) with { Attention = attention };
        float[] expected;
        using (var full = Full(config, options: options))
        using (var tokens = Tokens())
        using (var positions = Positions())
        using (var logits = full.forward(tokens, positions))
            expected = Values(logits);

        var logitsByRank = TensorParallelRanks.Run(tp, group =>
        {
            using var shard = Shard(config, group, options: options);
            using var tokens = Tokens();
            using var positions = Positions();
            using var logits = shard.forward(tokens, positions);
            return Values(logits);
        });

        AssertClose(expected, logitsByRank[0], 1e-5, $"tp {tp} logits");
        for (int rank = 1; rank < tp; rank++)
            AssertBitwiseEqual(logitsByRank[0], logitsByRank[rank], $"rank {rank}'s logits against rank 0's");
    }

    [Fact]
    public void Bf16_shards_match_the_unsharded_model_within_bf16_rounding()
    {
        var config = MicroConfig();
        var options = Options(ScalarType.BFloat16, requiresGrad: false);
        float[] expected;
        using (var full = Full(config, options: options))
        using (var tokens = Tokens())
        using (var positions = Positions())
        using (var logits = full.forward(tokens, positions))
            expected = Values(logits);

        var logitsByRank = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, options: options);
            using var tokens = Tokens();
            using var positions = Positions();
            using var logits = shard.forward(tokens, positions);
            return Values(logits);
        });
        // Partial sums are rounded to bf16 before the reduction: a few bf16 ulps of the logits' scale.
        AssertClose(expected, logitsByRank[0], 3e-2, "bf16 tp 2 logits");
        AssertBitwiseEqual(logitsByRank[0], logitsByRank[1], "rank 1's bf16 logits against rank 0's");
    }

    [Fact]
    public void Packed_segments_and_a_middle_slice_split_the_same_way()
    {
        var config = MicroConfig();
        var spec = new LlamaSliceSpec(1, 2, HasEmbedding: false, HasHead: false);
        var options = Options(requiresGrad: false);
        int[][] positionRows = [[0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6], [.. Enumerable.Range(0, 11)]];
        int[][] segmentRows = [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [.. Enumerable.Repeat(0, 11)]];
        float[] expected;
        using (var full = Full(config, spec, options))
        using (var hidden = Hidden(config))
        using (var positions = Llama.MicroLlama.Rows(positionRows))
        using (var segments = Llama.MicroLlama.Rows(segmentRows))
        using (var output = full.forward(hidden, positions, segments))
            expected = Values(output);

        var outputs = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group, spec, options);
            using var hidden = Hidden(config);
            using var positions = Llama.MicroLlama.Rows(positionRows);
            using var segments = Llama.MicroLlama.Rows(segmentRows);
            using var output = shard.forward(hidden, positions, segments);
            return Values(output);
        });
        AssertClose(expected, outputs[0], 1e-5, "tp 2 hidden states of layer 1");
        AssertBitwiseEqual(outputs[0], outputs[1], "rank 1's hidden states against rank 0's");
    }

    [Fact]
    public void Size_one_is_todays_model_bit_for_bit_and_never_communicates()
    {
        var config = MicroConfig();
        var single = LocalTensorParallelGroup.Create(1)[0];
        using var today = Full(config);
        using var source = Llama.MicroLlama.Source(config);
        using var sizeOne = LlamaLoader.Load(source, config, LlamaSliceSpec.Whole(config).WithTensorParallel(0, 1), Options(), single);

        Assert.Null(sizeOne.TensorParallelGroup);
        Assert.Equal(today.named_parameters().Select(p => (p.name, string.Join(",", p.parameter.shape))),
            sizeOne.named_parameters().Select(p => (p.name, string.Join(",", p.parameter.shape))));
        var (todayLogits, todayGrads) = LogitsAndGradients(today);
        var (oneLogits, oneGrads) = LogitsAndGradients(sizeOne);
        AssertBitwiseEqual(todayLogits, oneLogits, "logits");
        foreach (var (name, grad) in todayGrads) AssertBitwiseEqual(grad, oneGrads[name], $"gradient of {name}");
        Assert.Equal(0, single.Calls);
    }

    static (float[] Logits, Dictionary<string, float[]> Gradients) LogitsAndGradients(LlamaSlice model)
    {
        using var tokens = Tokens();
        using var positions = Positions();
        using var logits = model.forward(tokens, positions);
        using var loss = CausalLmLoss.SumNll(logits, tokens);
        loss.backward();
        return (Values(logits), model.named_parameters().ToDictionary(p => p.name, p => Values(p.parameter.grad!)));
    }

    [Theory]
    [InlineData(8, 4, 50, 3, "num_attention_heads = 8 and num_key_value_heads = 4 and intermediate_size = 50")]
    [InlineData(8, 2, 48, 4, "num_key_value_heads = 2")]
    [InlineData(8, 4, 50, 4, "intermediate_size = 50")]
    public void A_split_that_cuts_heads_or_columns_is_refused_naming_the_key(int heads, int kvHeads, int intermediate, int tp, string named)
    {
        var config = MicroConfig(keyValueHeads: kvHeads) with { NumAttentionHeads = heads, IntermediateSize = intermediate };
        var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(0, tp);
        var error = Assert.Throws<ArgumentException>(() => spec.Validate(config));
        Assert.Equal($"tensor parallel size {tp} does not divide {named}: tensor parallelism splits whole attention heads, whole key/value heads and the MLP columns evenly", error.Message);
        // The loader checks before it reads anything.
        using var source = Llama.MicroLlama.Source(MicroConfig());
        Assert.Throws<ArgumentException>(() => LlamaLoader.Load(source, config, spec, Options(), LocalTensorParallelGroup.Create(tp)[0]));
        Assert.Empty(source.LoadedNames);
    }

    [Fact]
    public void A_shard_needs_its_own_ranks_group()
    {
        var config = MicroConfig();
        using var source = Llama.MicroLlama.Source(config);
        var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(1, 2);
        Assert.Contains("needs the group of its 2 ranks",
            Assert.Throws<ArgumentException>(() => LlamaLoader.Load(source, config, spec, Options())).Message);
        Assert.Contains("is tp rank 1 of 2, but the group given is rank 0 of 2",
            Assert.Throws<ArgumentException>(() => LlamaLoader.Load(source, config, spec, Options(), LocalTensorParallelGroup.Create(2)[0])).Message);
        Assert.Contains("rank 2 is outside 0 .. 1",
            Assert.Throws<ArgumentException>(() => LlamaSliceSpec.Whole(config).WithTensorParallel(2, 2).Validate(config)).Message);
    }
}
