using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

/// <summary>
/// A micro Llama for engine tests (vocab 256, hidden 32, 3 layers, 4 query heads over 2 key/value heads), freshly
/// initialised by <see cref="LlamaInitializer"/> so every slice of it draws the same values for the same names, and
/// synthetic token data: samples of varying length whose next token is the previous one plus a per-sample stride, a
/// pattern the model can learn within a few dozen steps.
/// </summary>
internal static class MicroModel
{
    public const int Vocab = 256;

    /// <summary>Larger than transformers' 0.02 so that attention patterns and gradients are far from trivial.</summary>
    public const double InitStd = 0.1;

    public static LlamaConfig Config(bool tied = false, int layers = 3) => new()
    {
        VocabSize = Vocab, HiddenSize = 32, NumHiddenLayers = layers, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 8, IntermediateSize = 64, RmsNormEps = 1e-5, RopeTheta = 10000, MaxPositionEmbeddings = 256,
        TieWordEmbeddings = tied, BosTokenId = 1, EosTokenIds = [2], TorchDtype = "float32",
    };

    public static LlamaModelOptions Options(ScalarType dtype = ScalarType.Float32) =>
        new() { DType = dtype, Attention = AttentionImplementation.ScaledDotProduct, RequiresGrad = true };

    public static LlamaSlice Create(LlamaConfig config, LlamaSliceSpec? spec = null, ScalarType dtype = ScalarType.Float32, long seed = 11) =>
        new LlamaInitializer(seed, InitStd).CreateSlice(config, spec, Options(dtype));

    /// <summary>
    /// <paramref name="count"/> samples of lengths between <paramref name="minLength"/> and
    /// <paramref name="maxLength"/>: token t+1 = token t + stride (mod vocab, avoiding 0, the pad id), strides 1 to
    /// <paramref name="maxStride"/>; every token but a short prompt of 2 is a target.
    /// </summary>
    public static InMemorySamples Samples(int count, int seed = 5, int minLength = 9, int maxLength = 24, int maxStride = 3)
    {
        var random = new Random(seed);
        var samples = new (int[] Ids, byte[] Targets)[count];
        for (int s = 0; s < count; s++)
        {
            int length = random.Next(minLength, maxLength + 1), stride = 1 + random.Next(maxStride);
            var ids = new int[length];
            ids[0] = 1 + random.Next(Vocab - 1);
            for (int i = 1; i < length; i++) ids[i] = 1 + (ids[i - 1] - 1 + stride) % (Vocab - 1);
            var targets = Enumerable.Range(0, length).Select(i => (byte)(i < 2 ? 0 : 1)).ToArray();
            samples[s] = (ids, targets);
        }
        return new InMemorySamples(maxLength, samples);
    }

    /// <summary>Unpacked batches of <see cref="Samples"/>, padded with id 0 (the micro model has no Llama 3 pad id).</summary>
    public static TrainingBatches Batches(int count = 64, int seed = 5, bool packed = false, ulong samplerSeed = 3,
        int maxLength = 24, int maxStride = 3)
    {
        var samples = Samples(count, seed, maxLength: maxLength, maxStride: maxStride);
        IExampleSet examples = packed ? new PackedExamples(samples) : new SampleExamples(samples);
        return TrainingBatches.InMemory(examples, new SamplerOptions(samplerSeed), padId: 0);
    }

    /// <summary>Gradients of the trainable parameters by name, as fp64 arrays (missing gradients as null).</summary>
    public static Dictionary<string, double[]?> Gradients(IEnumerable<(string Name, Tensor Parameter)> parameters)
    {
        using var scope = NewDisposeScope();
        return parameters.ToDictionary(p => p.Name,
            p => p.Parameter.grad is { } g ? g.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray() : null);
    }

    public static double[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>Raw bits of a tensor's elements, for bitwise comparisons in any dtype.</summary>
    public static byte[] Bits(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().contiguous().bytes.ToArray();
    }

    public static void AssertClose(IReadOnlyDictionary<string, double[]?> expected, IReadOnlyDictionary<string, double[]?> actual,
        double tolerance, string what)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.True(e is not null, $"{what}: '{name}' has no expected gradient");
            Assert.True(a is not null, $"{what}: '{name}' has no gradient");
            AssertClose(e!, a!, tolerance, $"{what}: '{name}'");
        }
    }

    /// <summary>|a - e| &lt;= tolerance * max(1, max |e|) element-wise: absolute for small tensors, relative for large.</summary>
    public static void AssertClose(double[] expected, double[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(1.0, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(actual[i] - expected[i]) <= tolerance * scale))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (tolerance {tolerance * scale:E2})");
    }
}
