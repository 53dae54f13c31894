using System.Text;
using Runtime.Model.IO;
using TorchSharp;
using static Runtime.Model.Tests.IO.SafeTensorsBytes;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.IO;

public class SafeTensorsWriterTests
{
    static readonly float[] F32Values = [1.5f, -2.25f, 3.0e-3f, 1.0e6f, float.Epsilon, -0.0f];
    static readonly float[] Bf16Exact = [1.0f, -2.5f, 0.15625f, 384.0f]; // representable in bf16
    static readonly float[] F16Exact = [0.5f, -1.25f, 65504f, 6.103515625e-05f]; // representable in fp16
    static readonly long[] I64Values = [long.MinValue, -1, 0, long.MaxValue, 1234567890123];
    static readonly byte[] U8Values = [0, 1, 127, 128, 255, 0x4F];

    /// <summary>The tensors of the round-trip tests; names chosen so that name order and dtype order disagree.</summary>
    static Dictionary<string, Tensor> MixedTensors() => new()
    {
        ["a.f32"] = torch.tensor(F32Values, [2, 3]),
        ["b.bf16"] = torch.tensor(Bf16Exact, [2, 2]).to(ScalarType.BFloat16),
        ["c.f16"] = torch.tensor(F16Exact, [4]).to(ScalarType.Float16),
        ["d.i64"] = torch.tensor(I64Values, [5]),
        ["e.u8"] = torch.tensor(U8Values, [3, 2]),
        ["f.scalar"] = torch.tensor(7.25f),
        ["g.empty"] = torch.zeros(0, 3),
        ["aa.f32"] = torch.tensor(new[] { 9.5f }, [1]),
    };

    [Fact]
    public void Round_trip_keeps_values_shapes_and_dtypes()
    {
        using var temp = new TempFolder();
        var path = temp.File("mixed.safetensors");
        var tensors = MixedTensors();
        SafeTensorsWriter.Write(path, tensors);

        using var file = new SafeTensorsFile(path);
        Assert.Equal(tensors.Keys.Order(), file.Names.Order());
        foreach (var (name, expected) in tensors)
        {
            using var actual = file.Load(name);
            TensorAssert.Identical(expected, actual, name);
        }
        using var f16 = file.Load("c.f16", ScalarType.Float32);
        Assert.Equal(F16Exact, f16.data<float>().ToArray());
        using var i64 = file.Load("d.i64");
        Assert.Equal(I64Values, i64.data<long>().ToArray());
        using var u8 = file.Load("e.u8");
        Assert.Equal(U8Values, u8.data<byte>().ToArray());
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void On_disk_layout_matches_the_format_description()
    {
        using var temp = new TempFolder();
        var path = temp.File("mixed.safetensors");
        var tensors = MixedTensors();
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["producer"] = "rt" });
        foreach (var t in tensors.Values) t.Dispose();
        var parsed = Parse(File.ReadAllBytes(path));

        // Header padded with spaces to a multiple of 8, and no more than needed.
        Assert.Equal(0UL, parsed.HeaderLength % 8);
        var json = parsed.HeaderText.TrimEnd(' ');
        Assert.EndsWith("}", json);
        Assert.True(parsed.HeaderText.Length - json.Length < 8);

        // __metadata__ first, with format pt and the extra string.
        Assert.Equal("__metadata__", parsed.Keys[0]);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "rt" }, parsed.Metadata);

        // The reference writer's order: descending dtype alignment (I64, F32, BF16, F16, U8), then name.
        Assert.Equal(["d.i64", "a.f32", "aa.f32", "f.scalar", "g.empty", "b.bf16", "c.f16", "e.u8"],
            parsed.Entries.Select(e => e.Name));

        // Offsets tile the data buffer from 0 to its end; each tensor starts at a multiple of its element size.
        long cursor = 0;
        foreach (var e in parsed.Entries)
        {
            Assert.Equal(cursor, e.Begin);
            var size = e.DType switch { "I64" => 8, "F32" => 4, "BF16" or "F16" => 2, "U8" => 1, _ => throw new Exception(e.DType) };
            Assert.Equal(0, (8 + (long)parsed.HeaderLength + e.Begin) % size);
            Assert.Equal(e.Shape.Aggregate(1L, (a, b) => a * b) * size, e.End - e.Begin);
            cursor = e.End;
        }
        Assert.Equal(parsed.Data.Length, cursor);

        // Bytes, little-endian, row-major, computed here without torch.
        Assert.Equal(F32(F32Values), parsed.BytesOf("a.f32"));
        Assert.Equal(Bf16(Bf16Exact.Select(Bf16Bits).ToArray()), parsed.BytesOf("b.bf16"));
        Assert.Equal(F16(F16Exact), parsed.BytesOf("c.f16"));
        Assert.Equal(I64(I64Values), parsed.BytesOf("d.i64"));
        Assert.Equal(U8Values, parsed.BytesOf("e.u8"));
        Assert.Equal(F32(7.25f), parsed.BytesOf("f.scalar"));
        Assert.Equal([], parsed.Entries.Single(e => e.Name == "f.scalar").Shape);
        Assert.Equal([0L, 3L], parsed.Entries.Single(e => e.Name == "g.empty").Shape);
    }

    [Fact]
    public void Header_text_is_byte_for_byte_what_the_reference_writer_emits()
    {
        using var temp = new TempFolder();
        var path = temp.File("one.safetensors");
        using var t = torch.tensor(new[] { 1f, 2f }, [2]);
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("w", t)]);

        // serde_json's compact output of the reference Metadata struct, padded to 8 bytes with spaces.
        const string json = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var padded = json + new string(' ', (8 - json.Length % 8) % 8);
        var expected = Build(padded, F32(1f, 2f));
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void Declared_dtype_is_what_is_written_fp32_input_rounds_to_nearest_even_bf16()
    {
        using var temp = new TempFolder();
        var path = temp.File("bf16.safetensors");
        // Values whose low 16 bits force rounding, including a tie that must go to even.
        float[] values = [1.00390625f, 1.01171875f, -3.1415927f, 1e-3f, 65519.0f];
        using var source = torch.tensor(values, [5]);
        SafeTensorsWriter.Write(path, [new TensorEntry("w", ScalarType.BFloat16, [5], () => source.alias())]);

        var expectedBits = values.Select(Bf16Bits).ToArray();
        Assert.Equal(Bf16(expectedBits), Parse(File.ReadAllBytes(path)).BytesOf("w"));

        using var file = new SafeTensorsFile(path);
        using var asFloat = file.Load("w", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asFloat.dtype);
        Assert.Equal(expectedBits.Select(Bf16Value), asFloat.data<float>().ToArray());
        Assert.False(source.IsInvalid); // the writer disposed only the alias
    }

    [Fact]
    public void Streaming_produces_each_tensor_once_in_file_order_and_frees_it_before_the_next()
    {
        using var temp = new TempFolder();
        var produced = new List<(string Name, Tensor Tensor)>();
        TensorEntry Lazy(string name, ScalarType dtype, long rows) => new(name, dtype, [rows, 4], () =>
        {
            Assert.All(produced, p => Assert.True(p.Tensor.IsInvalid, $"{p.Name} still alive when {name} is produced"));
            var t = torch.full([rows, 4], rows, dtype);
            produced.Add((name, t));
            return t;
        });

        SafeTensorsWriter.Write(temp.File("lazy.safetensors"),
            [Lazy("x", ScalarType.Float32, 3), Lazy("y", ScalarType.Int64, 2), Lazy("z", ScalarType.Float32, 1)]);

        Assert.Equal(["y", "x", "z"], produced.Select(p => p.Name)); // I64 before F32, then by name
        Assert.All(produced, p => Assert.True(p.Tensor.IsInvalid));
        using var file = new SafeTensorsFile(temp.File("lazy.safetensors"));
        using var x = file.Load("x");
        using var expected = torch.full([3, 4], 3f);
        TensorAssert.Identical(expected, x);
    }

    [Fact]
    public void Failed_write_leaves_the_previous_file_untouched_and_no_temporary_files()
    {
        using var temp = new TempFolder();
        var path = temp.File("model.safetensors");
        using var old = torch.ones(2);
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("old", old)]);
        var before = File.ReadAllBytes(path);

        var error = Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.Write(path,
        [
            new TensorEntry("a", ScalarType.Float32, [4], () => torch.zeros(4)),
            new TensorEntry("b", ScalarType.Float32, [4], () => throw new InvalidOperationException("producer failed")),
        ]));
        Assert.Equal("producer failed", error.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], temp.FileNames());
    }

    [Fact]
    public void Writing_over_an_existing_file_replaces_it_completely()
    {
        using var temp = new TempFolder();
        var path = temp.File("w.safetensors");
        using var big = torch.ones(1000);
        using var small = torch.ones(2);
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("big", big)]);
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("small", small)]);

        var parsed = Parse(File.ReadAllBytes(path)); // a file written in place would keep the old tail
        Assert.Equal(8, parsed.Data.Length);
        Assert.Equal(["small"], parsed.Entries.Select(e => e.Name));
        Assert.Equal(["w.safetensors"], temp.FileNames());
    }

    [Fact]
    public void Producing_another_shape_than_declared_names_the_tensor()
    {
        using var temp = new TempFolder();
        var path = temp.File("bad.safetensors");
        var error = Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.Write(path,
            [new TensorEntry("layer.w", ScalarType.Float32, [2, 3], () => torch.zeros(3, 2))]));
        Assert.Contains("layer.w", error.Message);
        Assert.Contains("[2, 3]", error.Message);
        Assert.Empty(temp.FileNames());
    }

    [Fact]
    public void Duplicate_names_and_non_pt_format_are_refused()
    {
        using var temp = new TempFolder();
        var path = temp.File("x.safetensors");
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path,
            [new TensorEntry("a", ScalarType.Float32, [1], () => torch.zeros(1)), new TensorEntry("a", ScalarType.Float32, [1], () => torch.zeros(1))]));
        using var t = torch.zeros(1);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [KeyValuePair.Create("a", t)],
            new Dictionary<string, string> { ["format"] = "np" }));
        Assert.Empty(temp.FileNames());
    }

    [Fact]
    public void Non_contiguous_input_is_written_in_row_major_order()
    {
        using var temp = new TempFolder();
        var path = temp.File("t.safetensors");
        using var m = torch.tensor(new[] { 1f, 2f, 3f, 4f, 5f, 6f }, [2, 3]);
        using var transposed = m.t(); // [3, 2] view: rows (1,4) (2,5) (3,6)
        SafeTensorsWriter.Write(path, [KeyValuePair.Create("t", transposed)]);
        Assert.Equal(F32(1, 4, 2, 5, 3, 6), Parse(File.ReadAllBytes(path)).BytesOf("t"));
        Assert.Equal("{\"__metadata__\"", Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, 15));
    }
}
