using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>
/// LoRA dropout: on A's input only, only while training (a context with randomness), with its mask drawn from the
/// counters (seed, step, micro-batch) and the module's own stream, so recomputing a micro-batch redraws the same mask.
/// </summary>
public sealed class LoraDropoutTests
{
    const int Width = 8;
    const double P = 0.5;

    /// <summary>W = 0, A = B = I, scaling 1: the output is the dropped-out input itself, so the mask can be read off.</summary>
    static Projection Transparent(string path)
    {
        var projection = new Projection(path, new Parameter(zeros(Width, Width), false));
        projection.AttachLora(eye(Width), eye(Width), 1.0, P);
        return projection;
    }

    static float[] Mask(Projection projection, StepRandomness? randomness)
    {
        using var x = ones(2, 16, Width);
        using var y = projection.forward(x, randomness);
        return y.data<float>().ToArray();
    }

    [Fact]
    public void Mask_is_torch_dropout_drawn_from_the_module_stream()
    {
        using var projection = Transparent("model.layers.3.self_attn.q_proj");
        var randomness = new StepRandomness(Seed: 1, Step: 2, MicroBatch: 3);
        var mask = Mask(projection, randomness);

        // Survivors are scaled by 1 / (1 - p); about p of the 256 elements are dropped.
        Assert.All(mask, v => Assert.True(v == 0f || v == 2f, $"{v}"));
        Assert.InRange(mask.Count(v => v == 0f), 0.35 * mask.Length, 0.65 * mask.Length);

        // The stream is the module's PEFT name + ".lora_dropout": another worker drawing it gets this mask.
        using var generator = randomness.GeneratorFor("model.layers.3.self_attn.q_proj.lora_dropout");
        using var expected = empty(2, 16, Width).bernoulli_(1 - P, generator) / (1 - P);
        Assert.Equal(expected.data<float>().ToArray(), mask);
    }

    [Fact]
    public void Dropped_input_is_bitwise_torch_dropout_with_a_float_mask_for_any_rate()
    {
        // The adapter keeps a 1-byte mask for its backward; its values must be those of x * (float mask / (1 - p)).
        const double p = 0.05;
        using var scope = NewDisposeScope();
        var projection = new Projection("model.layers.1.mlp.down_proj", new Parameter(zeros(Width, Width), false));
        projection.AttachLora(eye(Width), eye(Width), 1.0, p);
        using var g = new Generator(4);
        var x = randn([3, 40, Width], generator: g);
        var randomness = new StepRandomness(2, 5, 1);
        var y = projection.forward(x, randomness);

        using var stream = randomness.GeneratorFor(projection.DropoutStream);
        var expected = x * empty(3, 40, Width).bernoulli_(1 - p, stream).div_(1 - p);
        Assert.Equal(expected.data<float>().ToArray(), y.data<float>().ToArray());
        Assert.Contains(0f, y.data<float>().ToArray());
    }

    [Fact]
    public void Same_counters_same_mask_other_counters_or_modules_other_masks()
    {
        using var q = Transparent("model.layers.3.self_attn.q_proj");
        using var k = Transparent("model.layers.3.self_attn.k_proj");
        using var q4 = Transparent("model.layers.4.self_attn.q_proj");
        var randomness = new StepRandomness(7, 10, 0);

        var first = Mask(q, randomness);
        Assert.Equal(first, Mask(q, randomness));                       // recompute in backward
        Assert.Equal(first, Mask(q, new StepRandomness(7, 10, 0)));     // another worker, same counters
        Assert.NotEqual(first, Mask(q, new StepRandomness(7, 10, 1)));  // next micro-batch
        Assert.NotEqual(first, Mask(q, new StepRandomness(7, 11, 0)));  // next step
        Assert.NotEqual(first, Mask(q, new StepRandomness(8, 10, 0)));  // another run seed
        Assert.NotEqual(first, Mask(k, randomness));                    // sibling projection
        Assert.NotEqual(first, Mask(q4, randomness));                   // same projection, next layer
    }

    [Fact]
    public void No_randomness_no_dropout()
    {
        using var q = Transparent("model.layers.0.self_attn.q_proj");
        Assert.All(Mask(q, null), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void Dropout_touches_only_the_adapter_input()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(9);
        var w = randn([Width, Width], generator: g);
        var projection = new Projection("model.layers.0.mlp.up_proj", new Parameter(w.clone(), false));
        projection.AttachLora(eye(Width), eye(Width), 1.0, P);
        var x = randn([2, 16, Width], generator: g);
        var randomness = new StepRandomness(1, 1, 1);
        var y = projection.forward(x, randomness);

        using var stream = randomness.GeneratorFor(projection.DropoutStream);
        var mask = empty(2, 16, Width).bernoulli_(1 - P, stream) / (1 - P);
        var expected = x.matmul(w.t()) + x * mask; // base sees all of x
        Assert.True((y - expected).abs().max().item<float>() < 1e-5f);
    }

    [Fact]
    public void The_model_passes_its_context_randomness_to_every_adapter()
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config, MicroLlama.Options(ScalarType.Float32, AttentionImplementation.ScaledDotProduct));
        LoraInjector.Inject(model, new LoraConfig(4, 8, 0.3, LoraConfig.AllTargets), seed: 1);
        using (no_grad())
            foreach (var (_, p) in LoraInjector.Targets(model, new LoraConfig(4, 8, 0.3, LoraConfig.AllTargets)))
                p.LoraB!.normal_(0, 0.2); // a trained-looking adapter, so its input matters

        using var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(10, 3), MicroLlama.RandomTokens(10, 4));
        using var positions = AttentionContext.SequentialPositions(2, 10);
        float[] Logits(StepRandomness? randomness)
        {
            using var context = model.CreateContext(positions, randomness: randomness);
            using var _ = no_grad();
            using var logits = model.call(tokens, context);
            return logits.data<float>().ToArray();
        }

        var evaluation = Logits(null);
        var training = Logits(new StepRandomness(3, 1, 0));
        Assert.Equal(evaluation, Logits(null));
        Assert.NotEqual(evaluation, training);
        Assert.Equal(training, Logits(new StepRandomness(3, 1, 0)));
        Assert.NotEqual(training, Logits(new StepRandomness(3, 1, 1)));
    }
}
