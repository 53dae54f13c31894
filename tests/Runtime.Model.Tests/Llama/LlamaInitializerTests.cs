using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class LlamaInitializerTests
{
    const string Q = "model.layers.3.self_attn.q_proj.weight";
    const string Down = "model.layers.0.mlp.down_proj.weight";

    static float[] Values(LlamaInitializer init, string name, long[] shape, TensorSlice? slice = null)
    {
        using var t = init.Create(name, shape, ScalarType.Float32, slice);
        return t.data<float>().ToArray();
    }

    [Fact]
    public void The_same_seed_and_name_give_the_same_tensor_in_any_order()
    {
        var first = new LlamaInitializer(1234);
        var q1 = Values(first, Q, [64, 32]);
        var d1 = Values(first, Down, [32, 48]);

        var second = new LlamaInitializer(1234);
        var d2 = Values(second, Down, [32, 48]);
        var q2 = Values(second, Q, [64, 32]);

        Assert.Equal(q1, q2);
        Assert.Equal(d1, d2);
        Assert.NotEqual(q1, Values(new LlamaInitializer(1235), Q, [64, 32]));
        Assert.NotEqual(q1.Take(100), Values(first, "model.layers.3.self_attn.k_proj.weight", [64, 32]).Take(100));
    }

    [Fact]
    public void Draws_look_like_normal_0_002()
    {
        var x = Values(new LlamaInitializer(99), "model.embed_tokens.weight", [512, 256]).Select(v => (double)v).ToArray();
        int n = x.Length;
        double mean = x.Average();
        double std = Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / n);
        double kurtosis = x.Sum(v => Math.Pow((v - mean) / std, 4)) / n;
        double withinOneSigma = x.Count(v => Math.Abs(v) < 0.02) / (double)n;
        double lag1 = Enumerable.Range(0, n - 1).Sum(i => x[i] * x[i + 1]) / (n - 1) / (std * std);

        Assert.True(Math.Abs(mean) < 4 * 0.02 / Math.Sqrt(n), $"mean {mean:E2}");
        Assert.InRange(std, 0.0198, 0.0202);
        Assert.InRange(kurtosis, 2.9, 3.1);
        Assert.InRange(withinOneSigma, 0.6787, 0.6867); // 68.27% +- 0.4%
        Assert.True(Math.Abs(lag1) < 0.01, $"neighbouring elements correlate: {lag1:F4}");
    }

    [Fact]
    public void Norm_weights_are_ones()
    {
        var init = new LlamaInitializer(5);
        Assert.All(Values(init, "model.layers.1.input_layernorm.weight", [32]), v => Assert.Equal(1f, v));
        Assert.All(Values(init, "model.layers.1.post_attention_layernorm.weight", [32]), v => Assert.Equal(1f, v));
        Assert.All(Values(init, "model.norm.weight", [32]), v => Assert.Equal(1f, v));
    }

    [Theory]
    [InlineData(0, 10, 20)]
    [InlineData(1, 5, 17)]
    public void A_slice_of_a_tensor_equals_the_same_part_of_the_whole_tensor(int dim, long start, long length)
    {
        var init = new LlamaInitializer(77);
        using var scope = NewDisposeScope();
        var whole = init.Create(Q, [64, 32]);
        var part = init.Create(Q, [64, 32], ScalarType.Float32, new TensorSlice(dim, start, length));
        Assert.True(part.equal(whole.narrow(dim, start, length)).all().ToBoolean());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_tensor_list_is_the_Hugging_Face_file_list(bool tied)
    {
        var config = LlamaPresets.Tiny with { TieWordEmbeddings = tied };
        var tensors = LlamaInitializer.Tensors(config).ToList();
        Assert.Equal(config.ParameterCount, tensors.Sum(t => t.ElementCount));
        Assert.Equal(2 + 9 * config.NumHiddenLayers + (tied ? 0 : 1), tensors.Count);
        Assert.Equal(tensors.Count, tensors.Select(t => t.Name).Distinct().Count());
        Assert.Equal(!tied, tensors.Any(t => t.Name == "lm_head.weight"));
        var v = tensors.Single(t => t.Name == "model.layers.2.self_attn.v_proj.weight");
        Assert.Equal([config.NumKeyValueHeads * config.HeadDim, (long)config.HiddenSize], v.Shape);
    }

    [Fact]
    public void A_freshly_initialised_slice_holds_the_initializer_values_in_the_requested_dtype()
    {
        var config = MicroLlama.Config(tied: false);
        var init = new LlamaInitializer(3);
        using var slice = init.CreateSlice(config, new LlamaSliceSpec(1, 3, false, true), new LlamaModelOptions { DType = ScalarType.BFloat16 });
        foreach (var (name, parameter) in slice.named_parameters())
        {
            Assert.Equal(ScalarType.BFloat16, parameter.dtype);
            using var expected = init.Create(name, parameter.shape, ScalarType.BFloat16);
            Assert.True(parameter.equal(expected).all().ToBoolean(), name);
        }
    }
}
