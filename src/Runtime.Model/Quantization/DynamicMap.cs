namespace Runtime.Model.Quantization;

/// <summary>
/// bitsandbytes' 8-bit "dynamic" code (<c>create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)</c>), the
/// code that double quantization uses for the per-block absmax values.
/// </summary>
/// <remarks>
/// Construction: for each decade i = 0..6 the interval [0.1, 1] is split by <c>linspace(0.1, 1, 2^i + 1)</c>; the
/// midpoints of its 2^i sub-intervals, times 10^(i-6), are codes, with both signs. That gives 127 positive and 127
/// negative values; 0 and 1 complete the 256, which are sorted ascending. So the map holds 0 (index 127) and 1
/// (index 255) but not -1: its smallest value is -0.99296875.
/// bitsandbytes computes this with float32 torch ops on the CPU, so this repeats torch's linspace kernel
/// (<c>start + step*i</c> for the first half, <c>end - step*(steps-1-i)</c> for the second) as the compiled libtorch
/// evaluates it: as fused multiply-adds (without the fusion 42 of the 256 values differ by 1 ulp from
/// <c>torch.linspace</c>; with it none do, checked against libtorch 2.10 here). A libtorch built without FMA would round
/// those few entries differently; that never matters for reading, because the map travels with the weights
/// (<c>nested_quant_map</c>) and dequantization uses the stored one.
/// </remarks>
public static class DynamicMap
{
    public const int Size = 256;

    /// <summary>The 256 sorted float32 values of the signed dynamic map.</summary>
    public static float[] CreateSigned()
    {
        const int maxExponentBits = 7;
        var values = new List<float>(Size);
        for (var i = 0; i < maxExponentBits; i++)
        {
            var boundaries = Linspace(0.1f, 1f, (1 << i) + 1);
            // torch multiplies the float32 tensor by the Python scalar 10**(i-6) in float32.
            var scale = (float)Math.Pow(10, i - (maxExponentBits - 1));
            for (var k = 0; k + 1 < boundaries.Length; k++)
            {
                var mean = (boundaries[k] + boundaries[k + 1]) / 2f;
                values.Add(scale * mean);
                values.Add(-(scale * mean));
            }
        }
        values.Add(0f);
        values.Add(1f);
        if (values.Count != Size) throw new InvalidOperationException($"dynamic map has {values.Count} values, expected {Size}");
        values.Sort();
        return [.. values];
    }

    /// <summary>float32 <c>torch.linspace(start, end, steps)</c> as libtorch's CPU kernel computes it.</summary>
    private static float[] Linspace(float start, float end, int steps)
    {
        var result = new float[steps];
        var step = (end - start) / (steps - 1);
        var halfway = steps / 2;
        for (var i = 0; i < steps; i++)
            result[i] = i < halfway
                ? MathF.FusedMultiplyAdd(step, i, start)
                : MathF.FusedMultiplyAdd(-step, steps - i - 1, end);
        return result;
    }
}
