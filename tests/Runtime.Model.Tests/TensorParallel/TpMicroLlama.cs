using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using Runtime.Model.Tests.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// A micro Llama that tensor parallelism 2 and 4 can split: 8 query heads over 4 key/value heads (2 query heads per kv
/// head, so a shard's heads must find their own kv heads), head_dim 6 (not hidden / heads), intermediate 48, 2 layers.
/// Weights are <see cref="MicroLlama.Weights"/>' (random, large enough for non-trivial attention), so the unsharded
/// model and every shard read the same values.
/// </summary>
public static class TpMicroLlama
{
    public static LlamaConfig MicroConfig(bool tied = false, int keyValueHeads = 4) => new()
    {
        VocabSize = 61, HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 8, NumKeyValueHeads = keyValueHeads,
        HeadDim = 6, IntermediateSize = 48, RmsNormEps = 1e-5, RopeTheta = 100, MaxPositionEmbeddings = 128,
        TieWordEmbeddings = tied, BosTokenId = 1, EosTokenIds = [2], TorchDtype = "float32",
    };

    public static LlamaModelOptions Options(ScalarType dtype = ScalarType.Float32, bool requiresGrad = true) =>
        new() { DType = dtype, RequiresGrad = requiresGrad };

    /// <summary>The unsharded slice (default: the whole model).</summary>
    public static LlamaSlice Full(LlamaConfig config, LlamaSliceSpec? spec = null, LlamaModelOptions? options = null)
    {
        using var source = MicroLlama.Source(config);
        return LlamaLoader.Load(source, config, spec, options ?? Options());
    }

    /// <summary>
    /// The group member's shard of the slice (default: the whole model), read from a source of its own; with
    /// <paramref name="vocabularyParallel"/> its embedding and head hold its vocabulary rows.
    /// </summary>
    public static LlamaSlice Shard(LlamaConfig config, ITensorParallelGroup group, LlamaSliceSpec? spec = null,
        LlamaModelOptions? options = null, bool vocabularyParallel = false)
    {
        using var source = MicroLlama.Source(config);
        var sharded = (spec ?? LlamaSliceSpec.Whole(config)).WithTensorParallel(group.Rank, group.Size, vocabularyParallel);
        return LlamaLoader.Load(source, config, sharded, options ?? Options(), group);
    }

    public static int[][] TokenRows { get; } = [MicroLlama.RandomTokens(11, 3, 61), MicroLlama.RandomTokens(11, 4, 61)];

    public static Tensor Tokens() => MicroLlama.Rows(TokenRows);

    public static Tensor Positions() => AttentionContext.SequentialPositions(2, 11);

    /// <summary>Hidden states [2, 11, hidden] for a slice without the embedding, the same on every rank.</summary>
    public static Tensor Hidden(LlamaConfig config)
    {
        var random = new Random(17);
        var values = Enumerable.Range(0, 2 * 11 * config.HiddenSize).Select(_ => (float)(2 * random.NextDouble() - 1)).ToArray();
        return tensor(values, [2, 11, config.HiddenSize]);
    }

    /// <summary>
    /// Gives every adapter a non-zero B (PEFT starts it at zero, which would leave A without a gradient): a
    /// counter-based draw of the full [out, r] matrix per name, of which a shard keeps its part.
    /// </summary>
    public static void RandomizeLoraB(LlamaSlice slice, LoraConfig config)
    {
        var draw = new LlamaInitializer(seed: 23, std: 0.3);
        using var noGrad = no_grad();
        foreach (var (_, projection) in LoraInjector.Targets(slice, config))
        {
            using var b = draw.Create(projection.ModulePath + ".lora_B.weight", [projection.FullOutFeatures, config.Rank],
                ScalarType.Float32, projection.LoraBSlice);
            projection.LoraB!.copy_(b);
        }
    }

    /// <summary>
    /// Forward of <see cref="Tokens"/> (or <see cref="Hidden"/> for a slice without the embedding, as a leaf that
    /// requires grad), the summed next-token NLL, backward. Returns the logits and the input's gradient (hidden input).
    /// </summary>
    public static (float[] Logits, float[]? InputGradient) ForwardBackward(LlamaSlice model, StepRandomness? randomness = null)
    {
        using var scope = NewDisposeScope();
        var tokens = Tokens();
        var positions = Positions();
        var input = model.Spec.HasEmbedding ? tokens : Hidden(model.Config).requires_grad_(true);
        using var context = model.CreateContext(positions, randomness: randomness);
        var logits = model.call(input, context);
        CausalLmLoss.SumNll(logits, tokens).backward();
        return (Values(logits), model.Spec.HasEmbedding ? null : Values(input.grad!));
    }

    /// <summary>The trainable parameters' placements and gradients, by canonical name.</summary>
    public static Dictionary<string, (TensorParallelPlacement Placement, float[] Gradient)> Gradients(LlamaSlice model)
    {
        using var scope = NewDisposeScope();
        var placements = TensorParallelPlacements.For(model);
        return model.named_parameters().Where(p => p.parameter.requires_grad)
            .ToDictionary(p => p.name, p => (placements[p.name], Values(p.parameter.grad!)));
    }

    public static float[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
    }

    /// <summary>The values of <paramref name="full"/> in the part <paramref name="slice"/> covers (all with null).</summary>
    public static float[] Part(Tensor full, TensorSlice? slice)
    {
        using var scope = NewDisposeScope();
        return Values(slice is { } s ? full.narrow(s.Dim, s.Start, s.Length) : full);
    }

    /// <summary>|actual - expected| &lt;= tolerance * max(1, max |expected|), element-wise.</summary>
    public static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        double scale = Math.Max(1.0, expected.Max(v => Math.Abs((double)v)));
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs((double)actual[i] - expected[i]) <= tolerance * scale))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (tolerance {tolerance * scale:E2})");
    }

    public static void AssertBitwiseEqual(float[] expected, float[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected bitwise {expected[i]:R}");
    }
}
