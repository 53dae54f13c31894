using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Model.Tests.Reference;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

/// <summary>
/// A micro Llama for tests: vocab 97, hidden 32, 3 layers, 4 heads over 2 kv heads, llama3 rope scaling with
/// theta 100 and original_max 32 so all three rope bands occur within a few dozen positions. The untied variant uses
/// head_dim 12 (not hidden / heads) to catch code that derives head_dim from hidden_size. Weights are random with
/// magnitudes that make attention and logits non-trivial, and exactly representable in bf16 so bf16 runs differ from
/// the reference only by activation rounding.
/// </summary>
public static class MicroLlama
{
    public static LlamaConfig Config(bool tied) => new()
    {
        VocabSize = 97, HiddenSize = 32, NumHiddenLayers = 3, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = tied ? 8 : 12, IntermediateSize = 48, RmsNormEps = 1e-5, RopeTheta = 100,
        RopeScaling = new RopeScaling(4.0, 1.0, 4.0, 32), TieWordEmbeddings = tied, MaxPositionEmbeddings = 256,
        BosTokenId = 1, EosTokenIds = [2], TorchDtype = "float32",
    };

    /// <summary>Random weights by name: embeddings N(0, 1), projections N(0, 1/in), norm weights in [0.7, 1.3].</summary>
    public static Dictionary<string, (float[] Data, long[] Shape)> Weights(LlamaConfig config, int seed)
    {
        var random = new Random(seed);
        var result = new Dictionary<string, (float[], long[])>();
        foreach (var t in LlamaTensorNames.All(config))
        {
            var data = new float[t.ElementCount];
            double std = t.Name == LlamaTensorNames.EmbedTokens ? 1.0 : t.Shape.Length == 2 ? 1.0 / Math.Sqrt(t.Shape[1]) : 0;
            for (int i = 0; i < data.Length; i++)
            {
                double value = std > 0 ? std * Gaussian(random) : 1.0 + 0.3 * (2 * random.NextDouble() - 1);
                data[i] = RoundToBFloat16((float)value);
            }
            result[t.Name] = (data, t.Shape);
        }
        return result;
    }

    public static DictionaryTensorSource Source(LlamaConfig config, int seed = 7) => new(Weights(config, seed));

    public static NaiveLlama Naive(LlamaConfig config, int seed = 7)
    {
        var weights = Weights(config, seed);
        return new NaiveLlama(config, name => weights[name].Data.Select(f => (double)f).ToArray());
    }

    public static LlamaSlice Load(LlamaConfig config, LlamaModelOptions? options = null, LlamaSliceSpec? slice = null, int seed = 7)
    {
        using var source = Source(config, seed);
        return LlamaLoader.Load(source, config, slice, options);
    }

    public static LlamaModelOptions Options(ScalarType dtype, AttentionImplementation attention) =>
        new() { DType = dtype, Attention = attention, RequiresGrad = false };

    public static int[] RandomTokens(int count, int seed, int vocab = 97)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }

    /// <summary>Int64 [rows, length] from equal-length rows.</summary>
    public static Tensor Rows(params int[][] rows) =>
        tensor(rows.SelectMany(r => r.Select(x => (long)x)).ToArray(), [rows.Length, rows[0].Length]);

    /// <summary>A [batch, seq, vocab] fp32 tensor as nested arrays.</summary>
    public static float[][][] ToArray(Tensor logits)
    {
        using var cpu = logits.to(ScalarType.Float32).contiguous();
        var flat = cpu.data<float>().ToArray();
        long b = logits.shape[0], t = logits.shape[1], v = logits.shape[2];
        return Enumerable.Range(0, (int)b).Select(i =>
            Enumerable.Range(0, (int)t).Select(j => flat.AsSpan((int)((i * t + j) * v), (int)v).ToArray()).ToArray()).ToArray();
    }

    public static float RoundToBFloat16(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value);
        bits += 0x7FFF + ((bits >> 16) & 1);
        return BitConverter.Int32BitsToSingle(bits & unchecked((int)0xFFFF0000));
    }

    static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
