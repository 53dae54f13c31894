using Runtime.Model.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class RmsNormTests
{
    /// <summary>
    /// In bf16 HF normalises in fp32, rounds to bf16, and only then multiplies by the weight (rounding again). Emulated
    /// here with C# float arithmetic and explicit bf16 rounding; the other order (multiply in fp32, round once) is
    /// computed too, to show the inputs tell the two apart.
    /// </summary>
    [Fact]
    public void Bf16_normalises_in_fp32_casts_back_then_multiplies_by_the_weight()
    {
        const int rows = 64, hidden = 48;
        const double eps = 1e-5;
        var random = new Random(11);
        var x = Enumerable.Range(0, rows * hidden).Select(_ => MicroLlama.RoundToBFloat16((float)(3 * (random.NextDouble() - 0.5)))).ToArray();
        var w = Enumerable.Range(0, hidden).Select(_ => MicroLlama.RoundToBFloat16((float)(0.5 + random.NextDouble()))).ToArray();

        var hfOrder = new float[x.Length];
        var otherOrder = new float[x.Length];
        for (int r = 0; r < rows; r++)
        {
            float sumSquares = 0;
            for (int i = 0; i < hidden; i++) sumSquares += x[r * hidden + i] * x[r * hidden + i];
            float scale = 1f / MathF.Sqrt(sumSquares / hidden + (float)eps);
            for (int i = 0; i < hidden; i++)
            {
                float normalized = x[r * hidden + i] * scale;
                hfOrder[r * hidden + i] = MicroLlama.RoundToBFloat16(w[i] * MicroLlama.RoundToBFloat16(normalized));
                otherOrder[r * hidden + i] = MicroLlama.RoundToBFloat16(w[i] * normalized);
            }
        }

        using var scope = NewDisposeScope();
        using var norm = new RmsNorm(new Parameter(tensor(w).to(ScalarType.BFloat16), false), eps);
        var input = tensor(x, [rows, hidden]).to(ScalarType.BFloat16);
        var output = norm.call(input);
        Assert.Equal(ScalarType.BFloat16, output.dtype);
        var actual = output.to(ScalarType.Float32).data<float>().ToArray();

        Assert.True(hfOrder.Zip(otherOrder).Count(p => p.First != p.Second) > 50, "inputs do not distinguish the two cast orders");
        var mismatches = actual.Zip(hfOrder).Count(p => p.First != p.Second);
        Assert.True(mismatches == 0, $"{mismatches} of {actual.Length} elements differ from HF's cast order");
    }

    [Fact]
    public void Fp32_output_is_x_over_rms_times_weight()
    {
        using var scope = NewDisposeScope();
        using var norm = new RmsNorm(new Parameter(tensor(new float[] { 1, 2, 0.5f, -1 }), false), 1e-6);
        var y = norm.call(tensor(new float[] { 1, -2, 3, 4 }).reshape(1, 4)).data<float>().ToArray();
        double rms = Math.Sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
        double[] expected = [1 / rms, -4 / rms, 1.5 / rms, -4 / rms];
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], y[i], 1e-6);
    }
}
