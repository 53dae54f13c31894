using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>
/// One adapted projection against the formula written out with explicit matmuls: forward, gradients, dtype order
/// (PEFT's), frozen bases, and the 4-bit base.
/// </summary>
public sealed class LoraProjectionTests
{
    const long In = 20, Out = 12;
    const int Rank = 4;
    const double Scaling = 2.5;

    static Tensor Random(long[] shape, int seed, double scale = 1.0)
    {
        using var g = new Generator((ulong)seed);
        using var t = randn(shape, generator: g);
        return (t * scale).to(ScalarType.Float32);
    }

    static Projection Dense(ScalarType dtype, bool trainableBase = false, int seed = 1)
    {
        using var w = Random([Out, In], seed, 0.3);
        var projection = new Projection("model.layers.1.self_attn.q_proj", new Parameter(w.to(dtype), trainableBase));
        projection.AttachLora(Random([Rank, In], seed + 1, 0.3), Random([Out, Rank], seed + 2, 0.3), Scaling, 0.0);
        return projection;
    }

    static double MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        return d.item<double>();
    }

    [Fact]
    public void Fp32_forward_and_gradients_match_the_written_out_formula()
    {
        using var scope = NewDisposeScope();
        var projection = Dense(ScalarType.Float32);
        var x = Random([2, 5, In], 10).requires_grad_(true);
        var upstream = Random([2, 5, Out], 11);

        var y = projection.forward(x, null);
        (y * upstream).sum().backward();

        // Everything below in float64 with matmul, not linear: W x + s B A x, and its gradients by hand.
        var w = projection.Weight.detach().to(ScalarType.Float64);
        var a = projection.LoraA!.detach().to(ScalarType.Float64);
        var b = projection.LoraB!.detach().to(ScalarType.Float64);
        var xd = x.detach().to(ScalarType.Float64).reshape(10, In);
        var g = upstream.to(ScalarType.Float64).reshape(10, Out);
        var expected = xd.matmul(w.t()) + xd.matmul(a.t()).matmul(b.t()) * Scaling;
        Assert.True(MaxDiff(y.reshape(10, Out), expected) < 1e-5);

        var gradX = g.matmul(w) + g.matmul(b).matmul(a) * Scaling;
        var gradA = b.t().matmul(g.t()).matmul(xd) * Scaling;      // dL/dA = s B^T G^T X
        var gradB = g.t().matmul(xd.matmul(a.t())) * Scaling;      // dL/dB = s G^T (X A^T)
        Assert.True(MaxDiff(x.grad!.reshape(10, In), gradX) < 1e-5);
        Assert.True(MaxDiff(projection.LoraA!.grad!, gradA) < 1e-5);
        Assert.True(MaxDiff(projection.LoraB!.grad!, gradB) < 1e-5);
        Assert.Null(projection.Weight.grad); // a frozen base gets no gradient
        Assert.Equal(ScalarType.Float32, projection.LoraA!.grad!.dtype);
    }

    [Fact]
    public void A_trainable_dense_base_gets_its_gradient_too()
    {
        using var scope = NewDisposeScope();
        var projection = Dense(ScalarType.Float32, trainableBase: true);
        var x = Random([3, In], 12);
        var upstream = Random([3, Out], 13);
        (projection.forward(x, null) * upstream).sum().backward();
        var expected = upstream.to(ScalarType.Float64).t().matmul(x.to(ScalarType.Float64)); // G^T X
        Assert.True(MaxDiff(projection.Weight.grad!, expected) < 1e-5);
    }

    [Fact]
    public void Bf16_base_adds_the_fp32_update_before_rounding_once_as_PEFT_does()
    {
        using var scope = NewDisposeScope();
        var projection = Dense(ScalarType.BFloat16);
        var x = Random([4, 8, In], 20).to(ScalarType.BFloat16);
        var y = projection.forward(x, null);
        Assert.Equal(ScalarType.BFloat16, y.dtype);

        // PEFT's lora.Linear: result (bf16) + fp32 update -> fp32 sum -> cast back to bf16.
        var baseOut = matmul(x, projection.Weight.t());
        var update = matmul(matmul(x.to(ScalarType.Float32), projection.LoraA!.t()), projection.LoraB!.t()) * Scaling;
        var expected = (baseOut.to(ScalarType.Float32) + update).to(ScalarType.BFloat16);
        Assert.True(y.eq(expected).all().item<bool>(), $"max diff {MaxDiff(y, expected)}");

        // The other order (round the update to bf16, add in bf16) rounds twice and lands elsewhere somewhere.
        var roundedTwice = baseOut + update.to(ScalarType.BFloat16);
        Assert.False(roundedTwice.eq(expected).all().item<bool>());
    }

    [Fact]
    public void Rslora_scales_by_alpha_over_sqrt_r()
    {
        Assert.Equal(16.0 / 4, new LoraConfig(4, 16, 0, ["q_proj"]).Scaling);
        Assert.Equal(16.0 / 2, new LoraConfig(4, 16, 0, ["q_proj"], useRslora: true).Scaling);

        using var scope = NewDisposeScope();
        var config = new LoraConfig(16, 8, 0, ["q_proj"], useRslora: true);
        var w = Random([Out, In], 30);
        var projection = new Projection("p", new Parameter(w.clone(), false)); // the parameter takes over the handle it is given
        var a = Random([16, In], 31);
        var b = Random([Out, 16], 32);
        projection.AttachLora(a.clone(), b.clone(), config.Scaling, 0);
        var x = Random([3, In], 33);
        var expected = x.matmul(w.t()) + x.matmul(a.t()).matmul(b.t()) * 2.0; // 8 / sqrt(16)
        Assert.True(MaxDiff(projection.forward(x), expected) < 1e-5);
    }

    [Fact]
    public void Nf4_base_forward_is_the_dense_forward_with_the_dequantized_weight()
    {
        using var scope = NewDisposeScope();
        var w = Random([Out, 64], 40, 0.2).to(ScalarType.BFloat16);
        var dequantized = Nf4Weight.FromDense(w).Dequantize(ScalarType.BFloat16);
        var plain = new Projection("model.layers.0.mlp.up_proj", Nf4Weight.FromDense(w));
        var x = Random([2, 3, 64], 41).to(ScalarType.BFloat16);

        var y = plain.forward(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        Assert.True(y.eq(matmul(x, dequantized.t())).all().item<bool>());
        Assert.True(plain.IsQuantized);
        Assert.Empty(plain.parameters());
        Assert.Throws<InvalidOperationException>(() => plain.Weight);
    }

    [Fact]
    public void Nf4_base_with_an_adapter_follows_PEFT_bnb_order_and_trains_only_the_adapter()
    {
        using var scope = NewDisposeScope();
        var w = Random([Out, 64], 50, 0.2).to(ScalarType.BFloat16);
        var projection = new Projection("model.layers.0.mlp.up_proj", Nf4Weight.FromDense(w));
        projection.AttachLora(Random([Rank, 64], 51, 0.3), Random([Out, Rank], 52, 0.3), Scaling, 0.0);
        var dequantized = projection.QuantizedWeight!.Dequantize(ScalarType.BFloat16);
        var x = Random([2, 3, 64], 53).to(ScalarType.BFloat16).requires_grad_(true);

        var y = projection.forward(x, null);
        // PEFT's bnb Linear4bit: the fp32 update is cast to the result's dtype, then added.
        var update = matmul(matmul(x.detach().to(ScalarType.Float32), projection.LoraA!.detach().t()), projection.LoraB!.detach().t()) * Scaling;
        var expected = matmul(x.detach(), dequantized.t()) + update.to(ScalarType.BFloat16);
        Assert.True(y.eq(expected).all().item<bool>(), $"max diff {MaxDiff(y, expected)}");

        var upstream = Random([2, 3, Out], 54).to(ScalarType.BFloat16);
        (y.to(ScalarType.Float32) * upstream.to(ScalarType.Float32)).sum().backward();
        Assert.NotNull(x.grad);
        Assert.NotNull(projection.LoraA!.grad);
        Assert.NotNull(projection.LoraB!.grad);
        // Only the adapter is a parameter; the 4-bit codes and statistics are buffers without gradients.
        Assert.Equal(["lora_A.weight", "lora_B.weight"], projection.named_parameters().Select(p => p.name).Order().ToArray());
        Assert.All(projection.QuantizedWeight!.buffers(), t => Assert.Null(t.grad));
        Assert.All(projection.QuantizedWeight!.buffers(), t => Assert.False(t.requires_grad));

        // The input gradient is G (W + s B A), W the dequantized weight: the 4-bit base passes gradients through.
        var g = upstream.to(ScalarType.Float64).reshape(6, Out);
        var gradX = g.matmul(dequantized.to(ScalarType.Float64)) + g.matmul(projection.LoraB!.detach().to(ScalarType.Float64))
            .matmul(projection.LoraA!.detach().to(ScalarType.Float64)) * Scaling;
        var scale = gradX.abs().max().item<double>();
        Assert.True(MaxDiff(x.grad!.reshape(6, 64), gradX) < 0.02 * scale); // bf16 activations
    }

    [Fact]
    public void Attach_checks_shapes_dtype_and_refuses_a_second_adapter()
    {
        using var scope = NewDisposeScope();
        var projection = new Projection("model.layers.0.self_attn.k_proj", new Parameter(Random([Out, In], 60), false));
        var e = Assert.Throws<ArgumentException>(() => projection.AttachLora(zeros(Rank, In + 1), zeros(Out, Rank), 1, 0));
        Assert.Contains("model.layers.0.self_attn.k_proj", e.Message);
        Assert.Throws<ArgumentException>(() => projection.AttachLora(zeros(Rank, In, ScalarType.BFloat16), zeros(Out, Rank, ScalarType.BFloat16), 1, 0));
        Assert.Throws<ArgumentException>(() => projection.AttachLora(zeros(Rank, In), zeros(Out, Rank), 1, 1.0));
        projection.AttachLora(zeros(Rank, In), zeros(Out, Rank), 1, 0);
        Assert.Throws<InvalidOperationException>(() => projection.AttachLora(zeros(Rank, In), zeros(Out, Rank), 1, 0));
        Assert.Equal(["lora_A.weight", "lora_B.weight", "weight"], projection.named_parameters().Select(p => p.name).Order().ToArray());
    }
}
