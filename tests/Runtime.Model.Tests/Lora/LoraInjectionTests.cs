using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>Fresh adapters: PEFT's init distribution, determinism by (seed, name), what gets trained.</summary>
public sealed class LoraInjectionTests
{
    static readonly LoraConfig AllSeven = new(8, 16, 0.0, LoraConfig.AllTargets);

    static Dictionary<string, float[]> AdapterValues(LlamaSlice slice) =>
        LoraInjector.AdapterTensors(slice).ToDictionary(t => t.Name, t => t.Tensor.detach().data<float>().ToArray());

    [Fact]
    public void A_is_uniform_within_one_over_sqrt_fan_in()
    {
        const long fanIn = 1024;
        using var a = new LoraInitializer(3).CreateA("model.layers.0.mlp.down_proj.lora_A.weight", 64, fanIn);
        Assert.Equal(new long[] { 64, fanIn }, a.shape);
        Assert.Equal(ScalarType.Float32, a.dtype);
        var values = a.data<float>().ToArray();
        var bound = 1 / Math.Sqrt(fanIn); // kaiming_uniform(a=sqrt(5)): sqrt(1/3) * sqrt(3 / fan_in)
        Assert.All(values, v => Assert.InRange(v, -(float)bound, (float)bound));

        // U(-b, b): mean 0, variance b^2 / 3, and each tenth of the range holds a tenth of the draws (65536 of them).
        var mean = values.Average(v => (double)v);
        var variance = values.Average(v => (v - mean) * (v - mean));
        Assert.InRange(mean, -0.01 * bound, 0.01 * bound);
        Assert.InRange(variance, 0.98 * bound * bound / 3, 1.02 * bound * bound / 3);
        var buckets = values.GroupBy(v => Math.Min(9, (int)((v + bound) / (2 * bound) * 10))).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(10, buckets.Count);
        Assert.All(buckets.Values, count => Assert.InRange(count, 0.9 * values.Length / 10, 1.1 * values.Length / 10));
    }

    [Fact]
    public void Inject_adds_PEFT_initialised_adapters_and_freezes_everything_else()
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad)); // full fine-tuning's default
        LoraInjector.Inject(model, AllSeven, seed: 11);

        var trainable = LoraInjector.TrainableParameters(model);
        Assert.Equal(3 * 7 * 2, trainable.Count);
        Assert.All(trainable, t => Assert.True(LoraInjector.IsAdapterParameter(t.Name)));
        Assert.Contains(trainable, t => t.Name == "model.layers.2.mlp.down_proj.lora_B.weight");
        Assert.All(model.named_parameters().Where(p => !LoraInjector.IsAdapterParameter(p.name)), p => Assert.False(p.parameter.requires_grad));

        foreach (var layer in model.Model.Layers)
            foreach (var target in LoraConfig.AllTargets)
            {
                var p = LoraInjector.ProjectionOf(layer, target);
                Assert.Equal(new long[] { 8, p.InFeatures }, p.LoraA!.shape);
                Assert.Equal(new long[] { p.OutFeatures, 8 }, p.LoraB!.shape);
                Assert.Equal(2.0, p.LoraScaling);
                Assert.True(p.LoraB!.eq(0).all().item<bool>());
                var bound = (float)(1 / Math.Sqrt(p.InFeatures));
                Assert.True(p.LoraA!.abs().max().item<float>() <= bound);
                Assert.True(p.LoraA!.abs().max().item<float>() > 0.5f * bound);
            }

        // B = 0: the adapted model computes exactly what the base does.
        using var baseModel = MicroLlama.Load(config);
        using var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(9, 1));
        using var positions = AttentionContext.SequentialPositions(1, 9);
        using var _ = no_grad();
        using var adapted = model.forward(tokens, positions);
        using var plain = baseModel.forward(tokens, positions);
        Assert.True(adapted.eq(plain).all().item<bool>());
    }

    [Fact]
    public void Adapters_depend_on_seed_and_name_only_not_on_the_slicing()
    {
        var config = MicroLlama.Config(tied: true);
        using var whole = MicroLlama.Load(config);
        using var first = MicroLlama.Load(config, slice: new LlamaSliceSpec(0, 1, HasEmbedding: true, HasHead: false));
        using var rest = MicroLlama.Load(config, slice: new LlamaSliceSpec(1, 3, HasEmbedding: false, HasHead: true));
        LoraInjector.Inject(whole, AllSeven, seed: 5);
        // The slices adapt their targets in another order: the draws must not care.
        var reversed = new LoraConfig(8, 16, 0.0, LoraConfig.AllTargets.Reverse());
        LoraInjector.Inject(rest, reversed, seed: 5);
        LoraInjector.Inject(first, AllSeven, seed: 5);

        var expected = AdapterValues(whole);
        var sliced = AdapterValues(first).Concat(AdapterValues(rest)).ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(expected.Keys.Order(), sliced.Keys.Order());
        foreach (var (name, values) in expected)
            Assert.Equal(values, sliced[name]);

        // Another seed, or another name, draws other numbers.
        using var reseeded = MicroLlama.Load(config);
        LoraInjector.Inject(reseeded, AllSeven, seed: 6);
        var other = AdapterValues(reseeded);
        const string q0 = "model.layers.0.self_attn.q_proj.lora_A.weight";
        Assert.NotEqual(expected[q0], other[q0]);
        Assert.NotEqual(expected[q0], expected["model.layers.1.self_attn.q_proj.lora_A.weight"]);
    }

    [Fact]
    public void Only_the_configured_targets_get_adapters()
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config);
        LoraInjector.Inject(model, new LoraConfig(4, 8, 0.0, ["v_proj", "q_proj"]), seed: 1);
        var names = LoraInjector.AdapterTensors(model).Select(t => t.Name).ToList();
        Assert.Equal(3 * 2 * 2, names.Count);
        Assert.All(names, n => Assert.True(n.Contains(".self_attn.q_proj.") || n.Contains(".self_attn.v_proj."), n));
        Assert.Null(model.LmHead!.LoraA);
    }

    [Fact]
    public void Config_rejects_bad_values()
    {
        Assert.Throws<ArgumentException>(() => new LoraConfig(0, 8, 0, ["q_proj"]));
        Assert.Throws<ArgumentException>(() => new LoraConfig(4, 0, 0, ["q_proj"]));
        Assert.Throws<ArgumentException>(() => new LoraConfig(4, 8, 1.0, ["q_proj"]));
        Assert.Throws<ArgumentException>(() => new LoraConfig(4, 8, 0, []));
        var e = Assert.Throws<ArgumentException>(() => new LoraConfig(4, 8, 0, ["q_proj", "lm_head"]));
        Assert.Contains("lm_head", e.Message);
        Assert.Equal(["q_proj", "v_proj", "down_proj"], new LoraConfig(4, 8, 0, ["down_proj", "v_proj", "q_proj", "v_proj"]).Targets);
    }
}
