using System.Text;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Transformers' initialisation of a fresh Llama (normal(0, 0.02) for embeddings and projections, ones for norms), made
/// a pure function of (seed, tensor name, element index): element k of a tensor is a counter-based draw, so any worker
/// can produce exactly its own tensors, or one slice of a tensor, in any order, and get the same numbers as a single
/// process writing the whole model. Values are drawn in double and rounded once to the requested dtype.
/// </summary>
public sealed class LlamaInitializer(long seed, double std = LlamaInitializer.DefaultStd)
{
    /// <summary>transformers' default initializer_range.</summary>
    public const double DefaultStd = 0.02;

    public long Seed { get; } = seed;

    public double Std { get; } = std;

    /// <summary>The canonical tensors of a whole model, in the order <c>rt init</c> writes them.</summary>
    public static IEnumerable<LlamaTensorSpec> Tensors(LlamaConfig config) => LlamaTensorNames.All(config);

    /// <summary>
    /// The value of tensor <paramref name="name"/> of full shape <paramref name="shape"/> (or just the part
    /// <paramref name="slice"/> covers), as a new CPU tensor in <paramref name="dtype"/>.
    /// </summary>
    public Tensor Create(string name, long[] shape, ScalarType dtype = ScalarType.Float32, TensorSlice? slice = null)
    {
        var (localShape, offsets) = Region(name, shape, slice);
        long count = localShape.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        if (LlamaTensorNames.IsNormWeight(name))
        {
            Array.Fill(values, 1f);
        }
        else
        {
            ulong key = TensorKey(Seed, name);
            Parallel.For(0, (count + ChunkSize - 1) / ChunkSize, chunk =>
            {
                long start = chunk * ChunkSize, end = Math.Min(count, start + ChunkSize);
                for (long local = start; local < end; local++)
                    values[local] = (float)(Std * StandardNormal(key, offsets(local)));
            });
        }
        using var scope = NewDisposeScope();
        var t = tensor(values, localShape);
        // Draws are rounded to fp32 and then to the dtype. For bf16 that double rounding can, rarely, differ in the last
        // bit from rounding the double directly; it is the same on every worker, which is what determinism needs.
        return (dtype == ScalarType.Float32 ? t : t.to(dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>A weight factory for <see cref="LlamaSlice.Build"/>: each tensor, or the tensor-parallel part asked for.</summary>
    public WeightFactory AsFactory() => (t, dtype) => Create(t.Name, t.Shape, dtype, t.Slice);

    /// <summary>
    /// A freshly initialised slice (default: the whole model); a tensor-parallel shard (with its rank's group member)
    /// holds exactly its parts of the whole model's initial values.
    /// </summary>
    public LlamaSlice CreateSlice(LlamaConfig config, LlamaSliceSpec? slice = null, LlamaModelOptions? options = null,
        ITensorParallelGroup? tensorParallel = null) =>
        LlamaSlice.Build(config, slice ?? LlamaSliceSpec.Whole(config), options ?? LlamaModelOptions.Default, AsFactory(),
            tensorParallel: tensorParallel);

    const long ChunkSize = 1 << 16;

    /// <summary>The local shape, and a map from a local row-major index to the element's index in the full tensor.</summary>
    static (long[] Shape, Func<long, long> Global) Region(string name, long[] shape, TensorSlice? slice)
    {
        if (slice is not { } s) return (shape, i => i);
        if (s.Dim < 0 || s.Dim >= shape.Length || s.Start < 0 || s.Length < 0 || s.Start + s.Length > shape[s.Dim])
            throw new ArgumentException(
                $"{name}: slice dim {s.Dim} [{s.Start}, {s.Start + s.Length}) is outside shape [{string.Join(", ", shape)}]");
        var local = (long[])shape.Clone();
        local[s.Dim] = s.Length;
        long inner = 1;
        for (int d = s.Dim + 1; d < shape.Length; d++) inner *= shape[d];
        long localBlock = s.Length * inner, fullBlock = shape[s.Dim] * inner;
        return (local, i => i / localBlock * fullBlock + s.Start * inner + i % localBlock);
    }

    /// <summary>A 64-bit key per (seed, name): FNV-1a over the UTF-8 name, mixed with the seed.</summary>
    static ulong TensorKey(long seed, string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(name))
            h = (h ^ b) * 1099511628211UL;
        return Mix(h ^ Mix((ulong)seed + 0x9E3779B97F4A7C15UL));
    }

    /// <summary>Element k: Box-Muller on the pair k/2, taking the cosine half for even k and the sine half for odd k.</summary>
    static double StandardNormal(ulong key, long index)
    {
        ulong pair = (ulong)(index >> 1);
        ulong r1 = Mix(key ^ Mix(2 * pair + 1)), r2 = Mix(key ^ Mix(2 * pair + 2));
        double u1 = ((r1 >> 11) + 1) * (1.0 / (1UL << 53)); // (0, 1]: log never sees 0
        double u2 = (r2 >> 11) * (1.0 / (1UL << 53));
        double radius = Math.Sqrt(-2.0 * Math.Log(u1));
        double angle = 2.0 * Math.PI * u2;
        return (index & 1) == 0 ? radius * Math.Cos(angle) : radius * Math.Sin(angle);
    }

    /// <summary>SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.</summary>
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
