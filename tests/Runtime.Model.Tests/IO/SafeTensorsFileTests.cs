using Runtime.Model.IO;
using TorchSharp;
using static Runtime.Model.Tests.IO.SafeTensorsBytes;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.IO;

public class SafeTensorsFileTests
{
    /// <summary>
    /// A file built by hand from the format description: header unpadded, tensors in arbitrary order, metadata last.
    /// </summary>
    static string HandBuilt(TempFolder temp)
    {
        const string header =
            "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[16,32]}," +
            "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}," +
            "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[32,38]}," +
            "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[38,40]}," +
            "\"q\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[40,43]}," +
            "\"__metadata__\":{\"format\":\"pt\",\"source\":\"by hand\"}}";
        var data = Concat(
            F32(1f, -2f, 0.5f, 1024f),
            I64(-7, 1L << 40),
            Bf16(0x3F80, 0xC020, 0x3E20), // 1.0, -2.5, 0.15625
            [1, 0],
            [0x12, 0xAB, 0xFF]);
        var path = temp.File("hand.safetensors");
        File.WriteAllBytes(path, Build(header, data));
        return path;
    }

    [Fact]
    public void Reads_a_hand_built_file()
    {
        using var temp = new TempFolder();
        var path = HandBuilt(temp);
        using var file = new SafeTensorsFile(path);

        Assert.Equal(["w", "ids", "b", "mask", "q"], file.Names); // data-buffer order
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["source"] = "by hand" }, file.Metadata);
        var info = file.Describe("w");
        Assert.Equal("F32", info.DType);
        Assert.Equal([2L, 2L], info.Shape);
        Assert.Equal(path, info.File);

        using var w = file.Load("w");
        Assert.Equal([2L, 2L], w.shape);
        Assert.Equal([1f, -2f, 0.5f, 1024f], w.data<float>().ToArray());
        using var ids = file.Load("ids");
        Assert.Equal([-7L, 1L << 40], ids.data<long>().ToArray());
        using var mask = file.Load("mask");
        Assert.Equal(ScalarType.Bool, mask.dtype);
        Assert.Equal([true, false], mask.data<bool>().ToArray());
        using var q = file.Load("q");
        Assert.Equal(ScalarType.Byte, q.dtype);
        Assert.Equal([1L, 3L], q.shape);
        Assert.Equal([(byte)0x12, (byte)0xAB, (byte)0xFF], q.data<byte>().ToArray());
    }

    [Fact]
    public void Bf16_loaded_as_fp32_equals_the_converted_values()
    {
        using var temp = new TempFolder();
        using var file = new SafeTensorsFile(HandBuilt(temp));

        using var raw = file.Load("b");
        Assert.Equal(ScalarType.BFloat16, raw.dtype);
        using var asFloat = file.Load("b", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asFloat.dtype);
        Assert.Equal([1.0f, -2.5f, 0.15625f], asFloat.data<float>().ToArray());
        using var asDouble = file.Load("w", ScalarType.Float64);
        Assert.Equal([1.0, -2.0, 0.5, 1024.0], asDouble.data<double>().ToArray());
    }

    [Fact]
    public void Missing_tensor_names_the_file_and_the_tensor()
    {
        using var temp = new TempFolder();
        var path = HandBuilt(temp);
        using var file = new SafeTensorsFile(path);
        Assert.False(file.Contains("nope"));
        var error = Assert.Throws<TensorFileException>(() => file.Load("nope"));
        Assert.Contains(path, error.Message);
        Assert.Contains("'nope'", error.Message);
        Assert.Throws<TensorFileException>(() => file.Describe("nope"));
    }

    static (TempFolder Temp, string Path, Tensor Full) ThreeDimensional(ScalarType dtype)
    {
        var temp = new TempFolder();
        var path = temp.File("slices.safetensors");
        var full = torch.arange(4 * 6 * 5, dtype: ScalarType.Float32).reshape(4, 6, 5).to(dtype);
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("t", full)]);
        return (temp, path, full);
    }

    [Theory]
    [InlineData(0, 1, 2)]
    [InlineData(0, 0, 4)]
    [InlineData(1, 2, 3)]
    [InlineData(1, 5, 1)]
    [InlineData(2, 1, 3)]
    [InlineData(2, 0, 5)]
    [InlineData(1, 3, 0)]
    public void Slice_equals_narrow_of_the_full_tensor(int dim, long start, long length)
    {
        var (temp, path, full) = ThreeDimensional(ScalarType.Float32);
        using (temp)
        using (full)
        using (var file = new SafeTensorsFile(path))
        using (var slice = file.Load("t", slice: new TensorSlice(dim, start, length)))
        using (var expected = full.narrow(dim, start, length))
        {
            Assert.Equal(expected.shape, slice.shape);
            TensorAssert.Identical(expected, slice);
        }
    }

    [Fact]
    public void Bf16_slice_along_dim_1_converts_after_slicing()
    {
        var (temp, path, full) = ThreeDimensional(ScalarType.BFloat16);
        using (temp)
        using (full)
        using (var file = new SafeTensorsFile(path))
        using (var slice = file.Load("t", ScalarType.Float32, new TensorSlice(1, 1, 4)))
        using (var expected = full.narrow(1, 1, 4).to(ScalarType.Float32))
        {
            Assert.Equal(ScalarType.Float32, slice.dtype);
            TensorAssert.Identical(expected, slice);
        }
    }

    [Fact]
    public void Matrix_column_slice_matches_a_naive_gather()
    {
        using var temp = new TempFolder();
        var path = temp.File("m.safetensors");
        const int rows = 7, cols = 9;
        var values = Enumerable.Range(0, rows * cols).Select(i => (float)(i * 3 - 11)).ToArray();
        File.WriteAllBytes(path, Build(
            "{\"m\":{\"dtype\":\"F32\",\"shape\":[7,9],\"data_offsets\":[0,252]}}", F32(values)));

        using var file = new SafeTensorsFile(path);
        using var slice = file.Load("m", slice: new TensorSlice(1, 2, 4));
        var expected = new List<float>();
        for (var r = 0; r < rows; r++)
            for (var c = 2; c < 6; c++)
                expected.Add(values[r * cols + c]);
        Assert.Equal([7L, 4L], slice.shape);
        Assert.Equal(expected, slice.data<float>().ToArray());
    }

    [Theory]
    [InlineData(3, 0, 1)]
    [InlineData(0, 3, 2)]
    [InlineData(1, -1, 2)]
    public void Slice_outside_the_tensor_names_file_tensor_and_shape(int dim, long start, long length)
    {
        var (temp, path, full) = ThreeDimensional(ScalarType.Float32);
        using (temp)
        using (full)
        using (var file = new SafeTensorsFile(path))
        {
            var error = Assert.Throws<TensorFileException>(() => file.Load("t", slice: new TensorSlice(dim, start, length)));
            Assert.Contains(path, error.Message);
            Assert.Contains("'t'", error.Message);
            Assert.Contains("[4, 6, 5]", error.Message);
        }
    }

    [Fact]
    public void LoadExpecting_reports_both_shapes_on_a_mismatch()
    {
        var (temp, path, full) = ThreeDimensional(ScalarType.Float32);
        using (temp)
        using (full)
        using (var file = new SafeTensorsFile(path))
        {
            var error = Assert.Throws<TensorFileException>(() => file.LoadExpecting("t", [4, 5, 6]));
            Assert.Contains(path, error.Message);
            Assert.Contains("'t'", error.Message);
            Assert.Contains("[4, 6, 5]", error.Message);
            Assert.Contains("[4, 5, 6]", error.Message);
            using var ok = file.LoadExpecting("t", [4, 6, 5], slice: new TensorSlice(0, 1, 1));
            Assert.Equal([1L, 6L, 5L], ok.shape);
        }
    }

    [Fact]
    public void A_file_truncated_after_opening_fails_with_an_exception_not_a_crash()
    {
        using var temp = new TempFolder();
        var path = HandBuilt(temp);
        using var file = new SafeTensorsFile(path);
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
            stream.SetLength(8 + 20);
        var error = Assert.Throws<TensorFileException>(() => file.Load("q"));
        Assert.Contains(path, error.Message);
        Assert.Contains("'q'", error.Message);
    }
}
