using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class CodeTableTests
{
    /// <summary>The thresholds of bitsandbytes' CUDA <c>dQuantizeNF4</c> decision tree, copied as literals, ascending.</summary>
    internal static readonly float[] CudaNf4Thresholds =
    [
        -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
        -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
        0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
        0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
    ];

    [Fact]
    public void Nf4_table_is_the_qlora_table()
    {
        float[] expected =
        [
            -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
            -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
            0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
            0.7229568362236023f, 1.0f,
        ];
        Assert.Equal(expected, Nf4Codebook.Values.ToArray());
    }

    [Fact]
    public void Thresholds_are_the_cuda_kernel_literals()
    {
        Assert.Equal(CudaNf4Thresholds, Nf4Codebook.Thresholds.ToArray());
    }

    [Fact]
    public void Thresholds_are_midpoints_and_four_are_one_ulp_off_the_float32_midpoint()
    {
        var codes = Nf4Codebook.Values;
        var offByOne = new List<int>();
        for (var k = 0; k < 15; k++)
        {
            var threshold = Nf4Codebook.Thresholds[k];
            var exact = ((double)codes[k] + codes[k + 1]) / 2;   // exact: the codes are floats
            var fp32 = (codes[k] + codes[k + 1]) * 0.5f;
            // The float nearest the exact midpoint, or the other float of a tie: within one ulp either way.
            Assert.True(Math.Abs(threshold - exact) <= MathF.BitIncrement(Math.Abs(threshold)) - Math.Abs(threshold),
                $"threshold {k} = {threshold} is not next to the midpoint {exact}");
            if (threshold != fp32)
            {
                Assert.True(threshold == MathF.BitIncrement(fp32) || threshold == MathF.BitDecrement(fp32));
                offByOne.Add(k);
            }
        }
        Assert.Equal([0, 8, 12, 14], offByOne);
    }

    [Fact]
    public void Largest_gap_is_between_minus_one_and_the_second_code()
    {
        Assert.Equal(1.0f - 0.6961928009986877f, Nf4Codebook.LargestGap());
    }

    [Fact]
    public void Dynamic_map_has_256_strictly_increasing_values_with_zero_and_one_but_not_minus_one()
    {
        var map = DynamicMap.CreateSigned();
        Assert.Equal(256, map.Length);
        for (var i = 1; i < map.Length; i++) Assert.True(map[i] > map[i - 1], $"map[{i}] = {map[i]} <= map[{i - 1}] = {map[i - 1]}");
        Assert.Equal(0f, map[127]);
        Assert.Equal(1f, map[255]);
        Assert.DoesNotContain(-1f, map);
        // 127 negatives mirror the 127 positives below 1.
        for (var k = 0; k < 127; k++) Assert.Equal(-map[254 - k], map[k]);
    }

    [Theory]
    // Positives in sorted order: index 128 is decade i=0 (1 value), 129-130 i=1, 131-134 i=2, ..., 159-190 i=5,
    // 191-254 i=6, 255 is 1. Decade i holds 10^(i-6) times the midpoints of linspace(0.1, 1, 2^i + 1).
    [InlineData(128, 0.55e-6)]          // i=0: midpoint of [0.1, 1] = 0.55, times 1e-6
    [InlineData(129, 0.325e-5)]         // i=1: linspace = 0.1, 0.55, 1 -> 0.325, 0.775 (times 1e-5)
    [InlineData(130, 0.775e-5)]
    [InlineData(131, 0.2125e-4)]        // i=2: step 0.225 -> 0.2125, 0.4375, 0.6625, 0.8875 (times 1e-4)
    [InlineData(134, 0.8875e-4)]
    [InlineData(159, 0.1140625e-1)]     // i=5: step 0.9/32 = 0.028125 -> first midpoint 0.1140625 (times 1e-1)
    [InlineData(191, 0.10703125)]       // i=6: step 0.9/64 = 0.0140625 -> first midpoint 0.10703125
    [InlineData(253, 0.97890625)]       // i=6, second to last: 0.1 + 0.0140625 * 62.5
    [InlineData(254, 0.99296875)]       // i=6, last: 0.1 + 0.0140625 * 63.5
    [InlineData(0, -0.99296875)]
    [InlineData(126, -0.55e-6)]
    public void Dynamic_map_entries_match_hand_derivation(int index, double expected)
    {
        var map = DynamicMap.CreateSigned();
        Assert.Equal(expected, map[index], Math.Abs(expected) * 1e-6);
    }

    [Fact]
    public void Dynamic_map_is_bit_identical_to_one_built_from_torch_linspace()
    {
        // bitsandbytes builds the map with float32 torch.linspace on the CPU; the same libtorch does it here.
        var fromTorch = new List<float>();
        for (var i = 0; i < 7; i++)
        {
            using var scope = NewDisposeScope();
            var boundaries = linspace(0.1, 1.0, (1 << i) + 1, dtype: ScalarType.Float32);
            var count = boundaries.shape[0] - 1;
            var means = (boundaries.narrow(0, 0, count) + boundaries.narrow(0, 1, count)) / 2.0;
            var scaled = means * Math.Pow(10, i - 6);
            foreach (var v in scaled.data<float>().ToArray())
            {
                fromTorch.Add(v);
                fromTorch.Add(-v);
            }
        }
        fromTorch.Add(0f);
        fromTorch.Add(1f);
        fromTorch.Sort();
        Assert.Equal(fromTorch.ToArray(), DynamicMap.CreateSigned());
    }
}
