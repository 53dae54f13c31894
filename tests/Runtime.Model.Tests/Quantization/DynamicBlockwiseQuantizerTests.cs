using Runtime.Model.Quantization;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class DynamicBlockwiseQuantizerTests
{
    private static readonly float[] Map = DynamicMap.CreateSigned();

    /// <summary>
    /// A scalar re-enactment of the CUDA kernel's search, step by step as its source describes it: probe the sorted
    /// code at pivot 127, move by 64, 32, ..., 1 towards the value, then choose between the landing code and its
    /// neighbour on the value's side by comparing with their float32 midpoint (strictly).
    /// </summary>
    private static int CudaKernelCode(float x)
    {
        int pivot = 127, upperPivot = 255, lowerPivot = 0;
        float lower = -1f, upper = 1f, value = Map[pivot];
        for (var step = 64; step > 0; step >>= 1)
        {
            if (x > value) { lowerPivot = pivot; lower = value; pivot += step; }
            else { upperPivot = pivot; upper = value; pivot -= step; }
            value = Map[pivot];
        }
        if (upperPivot == 255) upper = Map[upperPivot];
        if (lowerPivot == 0) lower = Map[lowerPivot];
        if (x > value) return x > (upper + value) * 0.5f ? upperPivot : pivot;
        return x < (lower + value) * 0.5f ? lowerPivot : pivot;
    }

    private static byte[] Quantize(float[] values, int blockSize)
    {
        using var t = tensor(values);
        using var code = tensor(Map);
        var (codes, absmax) = DynamicBlockwiseQuantizer.Quantize(t, code, blockSize);
        absmax.Dispose();
        using (codes) return codes.data<byte>().ToArray();
    }

    [Fact]
    public void Values_exactly_on_midpoints_get_the_code_the_kernel_lands_on()
    {
        // One block per midpoint, each with a 1 to make its absmax 1 (so the scaled value is the midpoint itself).
        var values = new List<float>();
        for (var k = 0; k < 255; k++) values.AddRange([1f, (Map[k] + Map[k + 1]) * 0.5f]);
        var codes = Quantize([.. values], 2);
        var upper = 0;
        for (var k = 0; k < 255; k++)
        {
            Assert.Equal(CudaKernelCode(values[2 * k + 1]), codes[2 * k + 1]);
            if (codes[2 * k + 1] == k + 1) upper++;
        }
        Assert.InRange(upper, 1, 254); // the tie rule really goes both ways
    }

    [Fact]
    public void Other_values_get_the_nearest_code_like_the_kernel()
    {
        var rng = new Random(5);
        var values = new float[4096];
        for (var i = 0; i < values.Length; i++)
            values[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, -rng.NextDouble() * 7));
        var codes = Quantize(values, 256);
        for (var b = 0; b < values.Length / 256; b++)
        {
            var block = values.AsSpan(b * 256, 256);
            var absmax = 0f;
            foreach (var v in block) absmax = Math.Max(absmax, Math.Abs(v));
            for (var i = 0; i < 256; i++)
            {
                var scaled = block[i] * (1f / absmax);
                Assert.Equal(CudaKernelCode(scaled), codes[b * 256 + i]);
                // and it is the nearest code
                var best = Enumerable.Range(0, 256).MinBy(j => Math.Abs((double)Map[j] - scaled));
                Assert.Equal(Math.Abs((double)Map[best] - scaled), Math.Abs((double)Map[codes[b * 256 + i]] - scaled));
            }
        }
    }

    [Fact]
    public void Dequantize_is_code_times_block_absmax_with_a_partial_last_block()
    {
        using var codes = tensor(new byte[] { 255, 0, 127, 255, 128 });
        using var absmax = tensor(new[] { 2f, 0.5f });
        using var code = tensor(Map);
        using var values = DynamicBlockwiseQuantizer.Dequantize(codes, absmax, code, 3);
        Assert.Equal(new[] { 2f, 2 * Map[0], 0f, 0.5f, 0.5f * Map[128] }, values.data<float>().ToArray());
    }
}
