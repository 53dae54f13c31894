using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

/// <summary>
/// Reference values computed by PyTorch 2.11 and transformers 5.17 (see Fixtures/README.md for how they were made).
/// </summary>
internal static class OptimFixtures
{
    public static JsonElement Load(string file)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Optim", "Fixtures", file);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.Clone();
    }

    /// <summary>A tensor stored as base64 of little-endian fp32 bytes.</summary>
    public static Tensor Float32(string base64, long[] shape)
    {
        var floats = MemoryMarshal.Cast<byte, float>(Convert.FromBase64String(base64)).ToArray();
        return torch.tensor(floats, ScalarType.Float32).reshape(shape);
    }

    /// <summary>
    /// The generator script's exactly representable test values: ((i * multiplier + offset) % modulus - center) / divisor
    /// over the flat index i, reshaped.
    /// </summary>
    public static Tensor Pattern(long[] shape, long multiplier, long offset, long modulus, long center, float divisor)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        for (long i = 0; i < count; i++) values[i] = ((i * multiplier + offset) % modulus - center) / divisor;
        return torch.tensor(values, ScalarType.Float32).reshape(shape);
    }

    /// <summary>The fixture's initial weights of tensor number k.</summary>
    public static Tensor InitialWeight(int k, long[] shape) => Pattern(shape, 37, k * 11, 101, 50, 64f);

    /// <summary>The fixture's gradient of tensor number k at (0-based) step t.</summary>
    public static Tensor Gradient(int k, long[] shape, int t) => Pattern(shape, 53, t * 29 + k * 7, 97, 48, 128f);
}
