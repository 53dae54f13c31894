using System.Text;
using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Model.Lora;

/// <summary>
/// PEFT's initial adapter, made a pure function of (seed, parameter name, element index): <c>lora_A</c> is
/// kaiming_uniform(a = sqrt(5)) over its fan-in, which is U(-1/sqrt(in), 1/sqrt(in)), and <c>lora_B</c> is zero, so the
/// adapted model starts equal to the base. Element k of A is a counter-based draw keyed by the canonical parameter name
/// ("model.layers.3.self_attn.q_proj.lora_A.weight"), so every worker produces exactly its own adapters, in any order,
/// and a 1-worker run and a P x T x D run start from identical adapters.
/// </summary>
public sealed class LoraInitializer(long seed)
{
    public long Seed { get; } = seed;

    /// <summary>kaiming_uniform's bound for a = sqrt(5): gain sqrt(2 / (1 + 5)) times sqrt(3 / fan_in) = 1 / sqrt(fan_in).</summary>
    public static double Bound(long inFeatures) => 1.0 / Math.Sqrt(inFeatures);

    /// <summary>
    /// lora_A [rank, in] in float32, uniform in [-1/sqrt(in), 1/sqrt(in)]; or only the part <paramref name="slice"/>
    /// covers (a row-parallel projection's columns), with the same values as that part of the whole matrix.
    /// </summary>
    public Tensor CreateA(string parameterName, int rank, long inFeatures, TensorSlice? slice = null)
    {
        if (rank <= 0 || inFeatures <= 0)
            throw new ArgumentException($"{parameterName}: LoRA A needs a positive rank and input width (got [{rank}, {inFeatures}])");
        long rowStart = 0, rows = rank, columnStart = 0, columns = inFeatures;
        if (slice is { } s)
        {
            long full = s.Dim == 0 ? rank : s.Dim == 1 ? inFeatures : -1;
            if (full < 0 || s.Start < 0 || s.Length <= 0 || s.Start + s.Length > full)
                throw new ArgumentException(
                    $"{parameterName}: slice dim {s.Dim} [{s.Start}, {s.Start + s.Length}) is outside LoRA A [{rank}, {inFeatures}]");
            if (s.Dim == 0) (rowStart, rows) = (s.Start, s.Length);
            else (columnStart, columns) = (s.Start, s.Length);
        }
        var bound = Bound(inFeatures);
        var key = Key(Seed, parameterName);
        var values = new float[rows * columns];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
            {
                // Element k of the whole [rank, in] matrix is a function of k alone, whatever part is asked for.
                long k = (rowStart + r) * inFeatures + columnStart + c;
                var unit = (Mix(key ^ Mix((ulong)k + 1)) >> 11) * (1.0 / (1UL << 53)); // [0, 1)
                values[r * columns + c] = (float)(bound * (2 * unit - 1));
            }
        return tensor(values, [rows, columns]);
    }

    /// <summary>lora_B [out, rank]: zeros in float32.</summary>
    public static Tensor CreateB(long outFeatures, int rank) => zeros([outFeatures, rank], ScalarType.Float32);

    /// <summary>FNV-1a over the UTF-8 name, mixed with the seed.</summary>
    static ulong Key(long seed, string name)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(name)) hash = (hash ^ b) * 0x100000001b3UL;
        return Mix(hash ^ Mix((ulong)seed + 0x9E3779B97F4A7C15UL));
    }

    /// <summary>SplitMix64's finaliser.</summary>
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
