using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Runtime.Model.Tests.IO;

/// <summary>
/// The safetensors layout written and read by hand, straight from the format description, so tests can build files
/// without the writer and check files without the reader.
/// </summary>
public static class SafeTensorsBytes
{
    /// <summary>8-byte little-endian header length, the header text as given (no padding added), then the data.</summary>
    public static byte[] Build(string header, byte[] data, ulong? declaredHeaderLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredHeaderLength ?? (ulong)json.Length);
        json.CopyTo(file, 8);
        data.CopyTo(file, 8 + json.Length);
        return file;
    }

    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    public sealed record Parsed(ulong HeaderLength, string HeaderText, IReadOnlyList<string> Keys,
        IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<Entry> Entries, byte[] Data)
    {
        public byte[] BytesOf(string name)
        {
            var e = Entries.Single(x => x.Name == name);
            return Data[(int)e.Begin..(int)e.End];
        }
    }

    public static Parsed Parse(byte[] file)
    {
        var n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        var text = Encoding.UTF8.GetString(file, 8, (int)n);
        using var doc = JsonDocument.Parse(text);
        var keys = new List<string>();
        var metadata = new Dictionary<string, string>();
        var entries = new List<Entry>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            keys.Add(p.Name);
            if (p.Name == "__metadata__")
            {
                foreach (var m in p.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            entries.Add(new Entry(p.Name, p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), offsets[0], offsets[1]));
        }
        return new Parsed(n, text, keys, metadata, entries, file[(8 + (int)n)..]);
    }

    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    public static byte[] I64(params long[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), values[i]);
        return bytes;
    }

    public static byte[] F16(params float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (var i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), BitConverter.HalfToUInt16Bits((Half)values[i]));
        return bytes;
    }

    /// <summary>bf16 as the top half of the fp32 bits, rounded to nearest even: a naive reference for torch's cast.</summary>
    public static ushort Bf16Bits(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        var rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(rounded >> 16);
    }

    public static float Bf16Value(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static byte[] Bf16(params ushort[] bits)
    {
        var bytes = new byte[bits.Length * 2];
        for (var i = 0; i < bits.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), bits[i]);
        return bytes;
    }

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
