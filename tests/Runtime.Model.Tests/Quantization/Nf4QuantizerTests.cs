using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

public class Nf4QuantizerTests
{
    // NF4 codes and the CUDA kernel's thresholds, written out so the expectations below do not come from the code
    // under test.
    private const float Code1 = -0.6961928009986877f, Code6 = -0.09105003625154495f, Code8 = 0.07958029955625534f,
        Code10 = 0.24611230194568634f, Code12 = 0.44070982933044434f, Code13 = 0.5626170039176941f,
        Code14 = 0.7229568362236023f;
    private const float Mid0 = -0.8480964004993439f, Mid7 = 0.03979014977812767f, Mid14 = 0.8614784181118011f;

    /// <summary>
    /// A [1, 128] weight of two blocks whose absmax are powers of two, so every scaled value is exact and the codes
    /// can be read off the table by hand, including values exactly on a midpoint and one float above it.
    /// </summary>
    private static float[] HandWorkedValues()
    {
        var w = new float[128];
        // Block 0, absmax 2: scaled = w / 2.
        w[0] = 2f;                                // +absmax -> 15
        w[1] = -2f;                               // -absmax -> 0
        w[2] = 0f;                                // -> 7
        w[3] = 2 * Mid7;                          // exactly on the 0 / 0.0796 midpoint -> lower code 7
        w[4] = 2 * MathF.BitIncrement(Mid7);      // one float above it -> 8
        w[5] = 2 * Mid0;                          // exactly on the -1 / -0.696 midpoint -> 0
        w[6] = 2 * MathF.BitIncrement(Mid0);      // -> 1
        w[7] = 2 * Code13;                        // exactly a code -> 13
        w[8] = 2 * Mid14;                         // on the 0.723 / 1 midpoint -> 14
        w[9] = 2 * MathF.BitIncrement(Mid14);     // -> 15
        w[10] = 2 * Code6;                        // -> 6
        w[11] = 0.2f;                             // scaled 0.1: nearer 0.0796 (8) than 0.1609 (9)
        // Block 1, absmax 0.5: scaled = w * 2.
        w[64] = -0.5f;                            // -> 0
        w[65] = 0.25f;                            // scaled 0.5: below the 0.4407 / 0.5626 midpoint 0.5017 -> 12
        w[66] = 0.5f * Code14;                    // -> 14
        w[67] = 0.125f;                           // scaled 0.25: below the 0.2461 / 0.3379 midpoint 0.2920 -> 10
        return w;
    }

    private static readonly byte[] HandWorkedBytes = BuildHandWorkedBytes();

    private static byte[] BuildHandWorkedBytes()
    {
        var bytes = Enumerable.Repeat((byte)0x77, 64).ToArray(); // zeros are code 7: 0x77 per pair
        byte[] block0 = [0xF0, 0x77, 0x80, 0x1D, 0xEF, 0x68];     // codes 15 0 | 7 7 | 8 0 | 1 13 | 14 15 | 6 8
        byte[] block1 = [0x0C, 0xEA];                             // codes 0 12 | 14 10
        block0.CopyTo(bytes, 0);
        block1.CopyTo(bytes, 32);
        return bytes;
    }

    private static byte[] PackedBytes(Nf4Tensor q) => q.Packed.data<byte>().ToArray();

    [Fact]
    public void Hand_worked_codes_pack_first_element_into_the_high_nibble()
    {
        using var w = tensor(HandWorkedValues(), [1, 128]);
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize: false);
        Assert.Equal(new long[] { 64, 1 }, q.Packed.shape);
        Assert.Equal(HandWorkedBytes, PackedBytes(q));
        Assert.Equal(new[] { 2f, 0.5f }, q.Absmax.data<float>().ToArray());
        Assert.Equal(new long[] { 1, 128 }, q.Shape);
        Assert.Equal(ScalarType.Float32, q.DType);
        Assert.False(q.IsDoubleQuantized);
    }

    [Fact]
    public void Hand_worked_values_dequantize_to_code_times_absmax()
    {
        using var w = tensor(HandWorkedValues(), [1, 128]);
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize: false);
        using var d = Nf4Quantizer.Dequantize(q, ScalarType.Float32);
        var v = d.data<float>().ToArray();
        Assert.Equal(new long[] { 1, 128 }, d.shape);
        float[] expectedBlock0 = [2f, -2f, 0f, 0f, 2 * Code8, -2f, 2 * Code1, 2 * Code13, 2 * Code14, 2f, 2 * Code6, 2 * Code8];
        Assert.Equal(expectedBlock0, v[..12]);
        Assert.Equal(new[] { -0.5f, 0.5f * Code12, 0.5f * Code14, 0.5f * Code10 }, v[64..68]);
        Assert.All(v[12..64], x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Partial_last_block_uses_its_own_absmax()
    {
        var w = new float[100];         // blocks: 64 + 36
        w[0] = 1f;                      // block 0 absmax 1 -> code 15
        w[64] = 1f;                     // block 1: scaled 0.25 -> code 10
        w[65] = -4f;                    // block 1 absmax 4 -> code 0
        w[99] = 2f;                     // scaled 0.5 -> code 12
        using var t = tensor(w, [1, 100]);
        using var q = Nf4Quantizer.Quantize(t, doubleQuantize: false);
        Assert.Equal(new long[] { 50, 1 }, q.Packed.shape);
        Assert.Equal(new[] { 1f, 4f }, q.Absmax.data<float>().ToArray());
        var bytes = PackedBytes(q);
        Assert.Equal(0xF7, bytes[0]);
        Assert.Equal(0xA0, bytes[32]);  // codes 10 | 0
        Assert.Equal(0x7C, bytes[49]);  // codes 7 (w[98] = 0) | 12
        using var d = Nf4Quantizer.Dequantize(q, ScalarType.Float32);
        Assert.Equal(new[] { 4 * Code10, -4f }, d.data<float>().ToArray()[64..66]);
        Assert.Equal(4 * Code12, d.data<float>().ToArray()[99]);
    }

    [Fact]
    public void Odd_element_count_leaves_code_7_in_the_last_low_nibble()
    {
        var w = new float[67];          // blocks: 64 + 3, 34 bytes
        w[64] = -3f;
        w[66] = 3f;
        using var t = tensor(w, [1, 67]);
        using var q = Nf4Quantizer.Quantize(t, doubleQuantize: false);
        Assert.Equal(new long[] { 34, 1 }, q.Packed.shape);
        var bytes = PackedBytes(q);
        Assert.Equal(0x07, bytes[32]);  // codes 0 | 7
        Assert.Equal(0xF7, bytes[33]);  // code 15 | padding 7
        using var d = Nf4Quantizer.Dequantize(q, ScalarType.Float32);
        Assert.Equal(new long[] { 1, 67 }, d.shape);
        Assert.Equal(new[] { -3f, 0f, 3f }, d.data<float>().ToArray()[64..]);
    }

    [Fact]
    public void All_zero_block_gets_code_7_and_absmax_0()
    {
        using var t = zeros(2, 64);
        using var q = Nf4Quantizer.Quantize(t, doubleQuantize: false);
        Assert.All(PackedBytes(q), b => Assert.Equal(0x77, b));
        Assert.All(q.Absmax.data<float>().ToArray(), a => Assert.Equal(0f, a));
        using var d = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16);
        using var total = d.to(ScalarType.Float32).abs().sum();
        Assert.Equal(0f, total.item<float>());
    }

    [Theory]
    [InlineData(3, 100)]   // 300 elements: 4 full blocks and a partial one
    [InlineData(5, 13)]    // 65 elements: odd, a block of 1
    [InlineData(16, 64)]
    public void Matches_a_naive_per_element_implementation(int rows, int cols)
    {
        var rng = new Random(rows * 1000 + cols);
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1) * (float)Math.Exp(rng.NextDouble() * 4 - 2)).ToArray();
        using var t = tensor(w, [rows, cols]);
        using var q = Nf4Quantizer.Quantize(t, doubleQuantize: false);

        var (expectedBytes, expectedAbsmax) = NaiveQuantize(w);
        Assert.Equal(expectedAbsmax, q.Absmax.data<float>().ToArray());
        Assert.Equal(expectedBytes, PackedBytes(q));
    }

    /// <summary>Loops over elements; the code is the number of CUDA thresholds the scaled value exceeds.</summary>
    private static (byte[] Bytes, float[] Absmax) NaiveQuantize(float[] w)
    {
        var blocks = (w.Length + 63) / 64;
        var absmax = new float[blocks];
        for (var i = 0; i < w.Length; i++) absmax[i / 64] = Math.Max(absmax[i / 64], Math.Abs(w[i]));
        var codes = new int[w.Length + 1];
        codes[w.Length] = 7;
        for (var i = 0; i < w.Length; i++)
        {
            var scaled = w[i] * (1f / absmax[i / 64]);
            codes[i] = CodeTableTests.CudaNf4Thresholds.Count(th => scaled > th);
        }
        var bytes = new byte[(w.Length + 1) / 2];
        for (var j = 0; j < bytes.Length; j++) bytes[j] = (byte)(codes[2 * j] << 4 | codes[2 * j + 1]);
        return (bytes, absmax);
    }

    [Theory]
    [InlineData(false, ScalarType.Float32)]
    [InlineData(true, ScalarType.Float32)]
    [InlineData(true, ScalarType.BFloat16)]
    [InlineData(false, ScalarType.Float16)]
    public void Round_trip_error_is_within_half_the_largest_code_gap_times_absmax(bool doubleQuantize, ScalarType dtype)
    {
        const int rows = 40, cols = 200;  // 8000 elements, 125 blocks
        var rng = new Random(7);
        var values = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1) * (1 + rng.Next(5))).ToArray();
        using var w = tensor(values, [rows, cols]).to(dtype);
        var exact = w.to(ScalarType.Float32).data<float>().ToArray();
        using var q = Nf4Quantizer.Quantize(w, doubleQuantize);
        using var d = Nf4Quantizer.Dequantize(q, ScalarType.Float32);
        using var usedAbsmax = q.DequantizeAbsmax();
        var deq = d.data<float>().ToArray();
        var absUsed = usedAbsmax.data<float>().ToArray();

        var halfGap = (1f - 0.6961928009986877f) / 2;
        for (var b = 0; b < exact.Length / 64 + (exact.Length % 64 == 0 ? 0 : 1); b++)
        {
            var block = exact.Skip(b * 64).Take(64).ToArray();
            var trueAbsmax = block.Max(Math.Abs);
            // With double quantization the scale itself is approximate: the code is picked with the true absmax and
            // multiplied by the stored one, so the error grows by at most |stored - true| (codes are within [-1, 1]).
            var bound = halfGap * trueAbsmax + Math.Abs(absUsed[b] - trueAbsmax) + 1e-6f * trueAbsmax;
            for (var i = 0; i < block.Length; i++)
                Assert.True(Math.Abs(deq[b * 64 + i] - block[i]) <= bound,
                    $"element {b * 64 + i}: {block[i]} -> {deq[b * 64 + i]}, bound {bound}");
        }
        Assert.Equal(dtype, q.DType);
    }

    [Fact]
    public void Dequantize_casts_the_float32_product_to_the_compute_dtype()
    {
        var rng = new Random(3);
        using var w = tensor(Enumerable.Range(0, 640).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), [10, 64]);
        using var q = Nf4Quantizer.Quantize(w);
        using var f32 = Nf4Quantizer.Dequantize(q, ScalarType.Float32);
        using var bf16 = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16);
        using var expected = f32.to(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.dtype);
        TensorAssert.Identical(expected, bf16);
        Assert.False(bf16.requires_grad);
    }

    [Fact]
    public void Double_quantization_by_hand_offset_codes_and_nested_absmax()
    {
        // Four blocks with absmax 1, 2, 3, 6: offset = mean = 3; absmax - offset = -2, -1, 0, 3; nested absmax 3;
        // scaled -2/3, -1/3, 0, 1. Nearest dynamic-map values: the 64 largest magnitudes are 0.1 + 0.0140625 (k + 0.5),
        // stored negated at sorted index 63 - k. -2/3 -> k = 40 (0.66953125; k = 39 gives 0.65546875) -> index 23.
        // -1/3 -> k = 16 (0.33203125; neighbours 0.31796875, 0.34609375) -> index 47. 0 -> 127. 1 -> 255.
        var w = new float[256];
        w[0] = 1f;
        w[64] = -2f;
        w[128] = 3f;
        w[192 + 10] = -6f;
        using var t = tensor(w, [1, 256]);
        using var q = Nf4Quantizer.Quantize(t);
        Assert.True(q.IsDoubleQuantized);
        Assert.Equal(3f, q.Nested!.Offset);
        Assert.Equal(ScalarType.Byte, q.Absmax.dtype);
        Assert.Equal(new byte[] { 23, 47, 127, 255 }, q.Absmax.data<byte>().ToArray());
        Assert.Equal(new[] { 3f }, q.Nested.Absmax.data<float>().ToArray());
        Assert.Equal(DynamicMap.CreateSigned(), q.Nested.Code.data<float>().ToArray());

        using var absmax = q.DequantizeAbsmax();
        var a = absmax.data<float>().ToArray();
        double[] expected = [-0.66953125 * 3 + 3, -0.33203125 * 3 + 3, 3, 6]; // 0.99140625, 2.00390625, 3, 6
        for (var i = 0; i < 4; i++) Assert.Equal(expected[i], a[i], 1e-6);
    }

    [Fact]
    public void Double_quantization_uses_one_nested_absmax_per_256_blocks()
    {
        // 300 blocks (one per row): absmax 1 for the first 256, 2 for the last 44. mean = (256 + 88) / 300.
        const int blocks = 300;
        var w = new float[blocks * 64];
        for (var r = 0; r < blocks; r++) w[r * 64] = r < 256 ? 1f : -2f;
        using var t = tensor(w, [blocks, 64]);
        using var q = Nf4Quantizer.Quantize(t);
        var mean = 344.0 / 300.0;
        Assert.Equal(mean, q.Nested!.Offset, 1e-6);
        Assert.Equal(new long[] { 2 }, q.Nested.Absmax.shape);
        var nested = q.Nested.Absmax.data<float>().ToArray();
        Assert.Equal(mean - 1, nested[0], 1e-6);  // |1 - mean|
        Assert.Equal(2 - mean, nested[1], 1e-6);  // |2 - mean|, the partial second group of 44
        // Nested block 0 holds only 1 - mean = -nested[0]: scaled -1, nearest code index 0 (-0.99296875).
        // Nested block 1 holds only 2 - mean = +nested[1]: scaled 1, code index 255.
        var codes = q.Absmax.data<byte>().ToArray();
        Assert.All(codes[..256], c => Assert.Equal(0, c));
        Assert.All(codes[256..], c => Assert.Equal(255, c));
    }

    [Fact]
    public void Rejects_non_float_and_non_finite_weights()
    {
        using var ints = ones(2, 64, dtype: ScalarType.Int32);
        Assert.Throws<ArgumentException>(() => Nf4Quantizer.Quantize(ints));
        var values = new float[128];
        values[70] = float.NaN;
        using var nan = tensor(values, [2, 64]);
        var e = Assert.Throws<ArgumentException>(() => Nf4Quantizer.Quantize(nan));
        Assert.Contains("NaN", e.Message);
    }
}
