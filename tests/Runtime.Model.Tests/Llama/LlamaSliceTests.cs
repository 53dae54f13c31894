using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class LlamaSliceTests
{
    [Theory]
    [InlineData(true, ScalarType.Float32)]
    [InlineData(false, ScalarType.Float32)]
    [InlineData(true, ScalarType.BFloat16)]
    [InlineData(false, ScalarType.BFloat16)]
    public void Two_chained_slices_equal_the_whole_model(bool tied, ScalarType dtype)
    {
        var config = MicroLlama.Config(tied);
        var options = MicroLlama.Options(dtype, AttentionImplementation.ScaledDotProduct);
        using var whole = MicroLlama.Load(config, options);
        using var first = MicroLlama.Load(config, options, new LlamaSliceSpec(0, 2, HasEmbedding: true, HasHead: false));
        using var last = MicroLlama.Load(config, options, new LlamaSliceSpec(2, 3, HasEmbedding: false, HasHead: true));

        using var scope = NewDisposeScope();
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(20, 1), MicroLlama.RandomTokens(20, 2));
        var positions = AttentionContext.SequentialPositions(2, 20);
        var expected = whole.forward(tokens, positions);
        var hidden = first.forward(tokens, positions);
        Assert.Equal([2L, 20, config.HiddenSize], hidden.shape);
        Assert.Equal(dtype, hidden.dtype);
        var actual = last.forward(hidden, positions);

        Assert.Equal(ScalarType.Float32, actual.dtype);
        Assert.True((actual - expected).abs().max().ToDouble() <= 1e-6);
    }

    [Fact]
    public void Parameters_carry_Hugging_Face_names_with_global_layer_indices()
    {
        var config = MicroLlama.Config(tied: false) with { NumHiddenLayers = 8 };
        using var slice = MicroLlama.Load(config, slice: new LlamaSliceSpec(5, 7, HasEmbedding: false, HasHead: true));
        var names = slice.named_parameters().Select(p => p.name).ToList();

        Assert.Contains("model.layers.5.self_attn.q_proj.weight", names);
        Assert.Contains("model.layers.6.mlp.down_proj.weight", names);
        Assert.Contains("model.layers.6.post_attention_layernorm.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.Contains("lm_head.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("model.layers.4.") || n.StartsWith("model.layers.7.") || n.StartsWith("model.layers.0."));
        Assert.DoesNotContain("model.embed_tokens.weight", names);
        Assert.Equal(2 * 9 + 2, names.Count);
        Assert.Equal(LlamaTensorNames.ForSlice(config, slice.Spec).Select(t => t.Name).Order(), names.Order());

        foreach (var (name, parameter) in slice.named_parameters())
            Assert.Equal(LlamaTensorNames.ForSlice(config, slice.Spec).Single(t => t.Name == name).Shape, parameter.shape);
    }

    [Fact]
    public void A_slice_reads_only_its_own_tensors_once_each()
    {
        var config = MicroLlama.Config(tied: false);
        using var source = MicroLlama.Source(config);
        using var slice = LlamaLoader.Load(source, config, new LlamaSliceSpec(1, 2, HasEmbedding: false, HasHead: false));
        Assert.Equal(9, source.LoadedNames.Count);
        Assert.All(source.LoadedNames, n => Assert.StartsWith("model.layers.1.", n));
        Assert.Equal(source.LoadedNames.Count, source.LoadedNames.Distinct().Count());
    }

    [Fact]
    public void Tied_whole_model_uses_one_parameter_for_embedding_and_head()
    {
        var config = MicroLlama.Config(tied: true);
        using var source = MicroLlama.Source(config);
        using var model = LlamaLoader.Load(source, config);
        Assert.Same(model.Model.EmbedTokens!.Weight, model.LmHead!.Weight);
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.Single(source.LoadedNames, LlamaTensorNames.EmbedTokens);
    }

    [Fact]
    public void Tied_head_on_a_slice_without_the_embedding_loads_the_embedding_as_its_head()
    {
        var config = MicroLlama.Config(tied: true);
        using var source = MicroLlama.Source(config);
        using var head = LlamaLoader.Load(source, config, new LlamaSliceSpec(3, 3, HasEmbedding: false, HasHead: true));
        Assert.Equal(new[] { LlamaTensorNames.FinalNorm, LlamaTensorNames.EmbedTokens }.Order(), source.LoadedNames.Order());
        Assert.Equal(["model.norm.weight", "lm_head.weight"], head.named_parameters().Select(p => p.name).ToArray());
        var embedding = MicroLlama.Weights(config, 7)[LlamaTensorNames.EmbedTokens].Data;
        Assert.Equal(embedding, head.LmHead!.Weight.data<float>().ToArray());
    }

    [Fact]
    public void Weights_are_converted_to_the_requested_dtype()
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config, MicroLlama.Options(ScalarType.BFloat16, AttentionImplementation.Eager));
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.All(model.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void Missing_tensors_are_all_named_with_the_source_location()
    {
        var config = MicroLlama.Config(tied: false);
        var weights = MicroLlama.Weights(config, 7);
        weights.Remove("model.layers.2.mlp.up_proj.weight");
        weights.Remove("lm_head.weight");
        using var source = new DictionaryTensorSource(weights, "/models/micro");
        var e = Assert.Throws<TensorFileException>(() => LlamaLoader.Load(source, config));
        Assert.Contains("/models/micro", e.Message);
        Assert.Contains("model.layers.2.mlp.up_proj.weight", e.Message);
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Empty(source.LoadedNames);

        // The slice that needs neither loads fine.
        using var first = LlamaLoader.Load(source, config, new LlamaSliceSpec(0, 2, true, false));
    }

    [Fact]
    public void A_tensor_of_the_wrong_shape_is_named_with_both_shapes()
    {
        var config = MicroLlama.Config(tied: true);
        var weights = MicroLlama.Weights(config, 7);
        weights["model.layers.0.self_attn.k_proj.weight"] = (new float[32 * 32], [32, 32]);
        using var source = new DictionaryTensorSource(weights);
        var e = Assert.Throws<TensorFileException>(() => LlamaLoader.Load(source, config));
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", e.Message);
        Assert.Contains("[32, 32]", e.Message);
        Assert.Contains("[16, 32]", e.Message);
    }

    [Fact]
    public void Inputs_of_the_wrong_kind_are_rejected_with_the_expected_shape()
    {
        var config = MicroLlama.Config(tied: true);
        using var tail = MicroLlama.Load(config, slice: new LlamaSliceSpec(1, 3, false, true));
        using var scope = NewDisposeScope();
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(5, 1));
        var e = Assert.Throws<ArgumentException>(() => tail.forward(tokens, AttentionContext.SequentialPositions(1, 5)));
        Assert.Contains("hidden states", e.Message);
        Assert.Throws<ArgumentException>(() => new LlamaSliceSpec(2, 4, false, true).Validate(config));
    }

    [Fact]
    public void Gradients_reach_every_parameter_of_a_trainable_slice()
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config, new LlamaModelOptions { Attention = AttentionImplementation.Eager });
        using var scope = NewDisposeScope();
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(12, 3));
        var logits = model.forward(tokens, AttentionContext.SequentialPositions(1, 12));
        CausalLmLoss.SumNll(logits, tokens).backward();
        foreach (var (name, p) in model.named_parameters())
            Assert.True(p.grad is not null && p.grad.abs().sum().ToDouble() > 0, $"{name} got no gradient");
    }
}
