using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Parity;

/// <summary>
/// Runtime's forward, loss, log-probabilities and greedy generation against what transformers' LlamaForCausalLM
/// computed for the same files (Fixtures/hf-parity, written by save_pretrained in transformers v5's spelling).
/// </summary>
public sealed class HfModelParityTests
{
    const double Fp32Tolerance = 1e-4;

    static Tensor InputIds() => tensor(HfFixtures.LongRows(HfFixtures.Expected["input_ids"]!).SelectMany(r => r).ToArray(), [2, 12]);

    static Tensor Labels() => tensor(HfFixtures.LongRows(HfFixtures.Expected["labels"]!).SelectMany(r => r).ToArray(), [2, 12]);

    static Tensor Reference(string file)
    {
        using var source = new SafeTensorsFile(HfFixtures.Path_(file));
        return source.Load("logits");
    }

    static LlamaSlice Load(string folder, ScalarType dtype = ScalarType.Float32,
        AttentionImplementation attention = AttentionImplementation.ScaledDotProduct)
    {
        using var source = new HfModelFolder(HfFixtures.Path_(folder));
        return LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions
        {
            DType = dtype, Attention = attention, RequiresGrad = false,
        });
    }

    static Tensor Logits(LlamaSlice model)
    {
        using var ids = InputIds();
        using var positions = AttentionContext.SequentialPositions(2, 12);
        using var _ = no_grad();
        return model.forward(ids, positions);
    }

    [Fact]
    public void Transformers_v5_config_spelling_is_read()
    {
        var config = LlamaConfig.Load(HfFixtures.Path_("micro-untied"));
        Assert.Equal(10000.0, config.RopeTheta);
        Assert.Equal(new RopeScaling(8.0, 1.0, 4.0, 16), config.RopeScaling);
        Assert.Equal("float32", config.TorchDtype);
        Assert.Equal([2, 3], config.EosTokenIds);
        Assert.Equal(8, config.HeadDim);
        Assert.True(LlamaConfig.Load(HfFixtures.Path_("micro-tied")).TieWordEmbeddings);
    }

    [Theory]
    [InlineData("micro-untied", AttentionImplementation.ScaledDotProduct)]
    [InlineData("micro-untied", AttentionImplementation.Eager)]
    [InlineData("micro-tied", AttentionImplementation.ScaledDotProduct)]
    [InlineData("micro-tied", AttentionImplementation.Eager)]
    public void Fp32_logits_match_transformers(string model, AttentionImplementation attention)
    {
        using var slice = Load(model, attention: attention);
        using var logits = Logits(slice);
        using var expected = Reference($"{model}.logits.eager.safetensors");
        Assert.Equal(expected.shape, logits.shape);
        var maxDiff = (logits - expected).abs().max().item<float>();
        Assert.True(maxDiff < Fp32Tolerance, $"max |Runtime - transformers| = {maxDiff}");
    }

    [Theory]
    [InlineData("micro-untied", "micro-untied")]
    [InlineData("micro-tied-bf16-sharded", "micro-tied")]
    public void Bf16_logits_match_transformers_within_bf16_rounding(string folder, string reference)
    {
        using var slice = Load(folder, ScalarType.BFloat16);
        using var logits = Logits(slice);
        using var expected = Reference($"{reference}.logits.bf16.safetensors");
        using var fp32 = Reference($"{reference}.logits.eager.safetensors");
        // Both bf16 computations round differently from fp32; Runtime's bf16 must sit as close to transformers' bf16
        // as bf16 itself sits to fp32 (one bf16 ulp of the largest logit is 2^-8 relative).
        var scale = expected.abs().max().item<float>();
        var diff = (logits - expected).abs().max().item<float>();
        var bf16Error = (expected - fp32).abs().max().item<float>();
        Assert.True(diff <= Math.Max(2 * bf16Error, scale / 128), $"bf16 max diff {diff}, transformers' own bf16 error {bf16Error}");
    }

    [Theory]
    [InlineData("micro-untied")]
    [InlineData("micro-tied")]
    public void Loss_and_token_log_probabilities_match_transformers(string model)
    {
        var expected = HfFixtures.Expected[model]!;
        using var slice = Load(model);
        using var logits = Logits(slice);
        using var labels = Labels();
        var (sum, count) = CausalLmLoss.Compute(logits, labels);
        using (sum)
            Assert.Equal(expected["loss_eager"]!.GetValue<double>(), sum.item<float>() / count, 1e-5);

        using var ids = InputIds();
        using var logProbs = CausalLmLoss.TokenLogProbs(logits, ids);
        var want = HfFixtures.Expected[model]!["token_logprobs"]!.AsArray()
            .SelectMany(r => r!.AsArray().Select(v => v!.GetValue<float>())).ToArray();
        var got = logProbs.data<float>().ToArray();
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(want[i] - got[i]) < Fp32Tolerance, $"log-prob {i}: {got[i]} vs {want[i]}");
    }

    [Theory]
    [InlineData("micro-untied")]
    [InlineData("micro-tied")]
    public void Greedy_generation_with_kv_cache_gives_transformers_tokens(string model)
    {
        var expected = HfFixtures.Expected[model]!;
        using var slice = Load(model);
        var generated = new LlamaGenerator(slice).Generate(
            HfFixtures.Ints(expected["greedy_prompt"]!),
            new GenerationOptions { MaxNewTokens = 12, EosTokenIds = [] });
        Assert.Equal(HfFixtures.Ints(expected["greedy_tokens"]!), generated);
    }
}
