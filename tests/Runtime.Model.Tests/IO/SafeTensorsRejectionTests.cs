using System.Text;
using Runtime.Model.IO;
using static Runtime.Model.Tests.IO.SafeTensorsBytes;

namespace Runtime.Model.Tests.IO;

/// <summary>Damaged or malformed files fail at open, with a message naming the file (and the tensor at fault).</summary>
public class SafeTensorsRejectionTests
{
    static TensorFileException Open(byte[] bytes, out string path, TempFolder temp)
    {
        path = temp.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var p = path;
        return Assert.Throws<TensorFileException>(() => new SafeTensorsFile(p).Dispose());
    }

    static string Tensor(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{shape}],\"data_offsets\":[{begin},{end}]}}";

    [Fact]
    public void File_shorter_than_8_bytes()
    {
        using var temp = new TempFolder();
        var error = Open([1, 2, 3, 4, 5], out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("5 bytes", error.Message);
    }

    [Fact]
    public void Header_length_beyond_the_file()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "1", 0, 4) + "}";
        var error = Open(Build(header, F32(1f), declaredHeaderLength: 4096), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("4096", error.Message);
    }

    [Fact]
    public void Header_length_near_2_pow_64_does_not_overflow()
    {
        using var temp = new TempFolder();
        var bytes = new byte[8 + 16];
        BitConverter.TryWriteBytes(bytes, ulong.MaxValue);
        var error = Open(bytes, out var path, temp);
        Assert.Contains(path, error.Message);
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",")]
    [InlineData("not json")]
    [InlineData("[1, 2]")]
    public void Header_that_is_not_a_JSON_object(string header)
    {
        using var temp = new TempFolder();
        var error = Open(Build(header, []), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("JSON", error.Message);
    }

    [Fact]
    public void Invalid_UTF8_header()
    {
        using var temp = new TempFolder();
        var bytes = Build("{\"a\":1}", []);
        bytes[10] = 0xFF;
        var error = Open(bytes, out var path, temp);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Unknown_dtype()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("layer.w", "Q7", "2", 0, 2) + "}";
        var error = Open(Build(header, [0, 0]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'layer.w'", error.Message);
        Assert.Contains("Q7", error.Message);
    }

    [Fact]
    public void Shape_does_not_match_the_byte_count_of_its_dtype()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("w", "F32", "3", 0, 16) + "}"; // 3 x 4 bytes, but 16 bytes given
        var error = Open(Build(header, new byte[16]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'w'", error.Message);
        Assert.Contains("12 bytes", error.Message);
    }

    [Fact]
    public void Offsets_beyond_the_data_buffer_mean_a_truncated_file()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "4", 0, 16) + "," + Tensor("b", "F32", "4", 16, 32) + "}";
        var error = Open(Build(header, new byte[20]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'b'", error.Message);
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void Overlapping_tensors()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "4", 0, 16) + "," + Tensor("b", "F32", "4", 8, 24) + "}";
        var error = Open(Build(header, new byte[24]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'a'", error.Message);
        Assert.Contains("'b'", error.Message);
        Assert.Contains("overlaps", error.Message);
    }

    [Fact]
    public void Hole_between_tensors()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "2", 0, 8) + "," + Tensor("b", "F32", "2", 16, 24) + "}";
        var error = Open(Build(header, new byte[24]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'b'", error.Message);
        Assert.Contains("[8, 16)", error.Message);
    }

    [Fact]
    public void Bytes_after_the_last_tensor()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "2", 0, 8) + "}";
        var error = Open(Build(header, new byte[12]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("belong to no tensor", error.Message);
    }

    [Fact]
    public void Duplicate_tensor_names()
    {
        using var temp = new TempFolder();
        var header = "{" + Tensor("a", "F32", "1", 0, 4) + "," + Tensor("a", "F32", "1", 4, 8) + "}";
        var error = Open(Build(header, new byte[8]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'a'", error.Message);
    }

    [Theory]
    [InlineData("\"shape\":[-1]")]
    [InlineData("\"shape\":[1.5]")]
    [InlineData("\"shape\":\"2\"")]
    public void Malformed_shape(string shape)
    {
        using var temp = new TempFolder();
        var header = "{\"w\":{\"dtype\":\"U8\"," + shape + ",\"data_offsets\":[0,2]}}";
        var error = Open(Build(header, new byte[2]), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'w'", error.Message);
    }

    [Fact]
    public void Non_string_metadata()
    {
        using var temp = new TempFolder();
        var header = "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}}";
        var error = Open(Build(header, []), out var path, temp);
        Assert.Contains(path, error.Message);
        Assert.Contains("'step'", error.Message);
    }

    [Fact]
    public void Missing_file()
    {
        using var temp = new TempFolder();
        var path = temp.File("absent.safetensors");
        var error = Assert.Throws<TensorFileException>(() => new SafeTensorsFile(path));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void A_valid_file_with_padding_and_zero_sized_tensors_is_accepted()
    {
        // The control case for the tests above: same builder, consistent offsets.
        using var temp = new TempFolder();
        var header = "{" + Tensor("e", "F32", "0", 0, 0) + "," + Tensor("a", "F32", "2", 0, 8) + "}   ";
        var path = temp.File("ok.safetensors");
        File.WriteAllBytes(path, Build(header, F32(3f, 4f)));
        using var file = new SafeTensorsFile(path);
        Assert.Equal(2, file.Names.Count);
        Assert.Equal("{", Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, 1));
    }
}
