using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>One tensor's entry in a safetensors header; offsets are relative to the start of the data buffer.</summary>
internal sealed record SafeTensorsEntry(string Name, string DType, ScalarType Type, long[] Shape, long Begin, long End)
{
    public long ByteCount => End - Begin;
}

/// <summary>
/// The parsed and validated header of a safetensors file. Validation is as strict as the reference implementation's
/// (every byte of the data buffer belongs to exactly one tensor, each tensor's byte count matches its shape and dtype)
/// so that a file accepted here is one every other reader accepts too, and a damaged file fails at open, naming the
/// file and the tensor, rather than at some later load.
/// </summary>
internal sealed class SafeTensorsHeader
{
    /// <summary>The reference implementation refuses larger headers; so do we, so that files stay interchangeable.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    /// <summary>Absolute file position of the data buffer: 8 + header length.</summary>
    public long DataStart { get; }

    public long DataLength { get; }

    /// <summary>Entries in data-buffer order.</summary>
    public IReadOnlyList<SafeTensorsEntry> Entries { get; }

    public IReadOnlyDictionary<string, SafeTensorsEntry> ByName { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafeTensorsHeader(long dataStart, long dataLength, List<SafeTensorsEntry> entries, Dictionary<string, string> metadata)
    {
        DataStart = dataStart;
        DataLength = dataLength;
        Entries = entries;
        ByName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        Metadata = metadata;
    }

    /// <summary>Reads the header from the start of <paramref name="stream"/> (the whole file).</summary>
    public static SafeTensorsHeader Read(Stream stream, string path)
    {
        var fileLength = stream.Length;
        if (fileLength < 8)
            throw new TensorFileException(
                $"{path}: the file is {fileLength} bytes long, shorter than the 8-byte header length every safetensors file starts with");

        Span<byte> prefix = stackalloc byte[8];
        stream.Position = 0;
        stream.ReadExactly(prefix);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(fileLength - 8))
            throw new TensorFileException(
                $"{path}: the header length says {headerLength} bytes, but only {fileLength - 8} bytes follow it (truncated, or not a safetensors file)");
        if (headerLength > MaxHeaderBytes)
            throw new TensorFileException(
                $"{path}: the header is {headerLength} bytes, more than the {MaxHeaderBytes} bytes safetensors allows");

        var json = new byte[headerLength];
        stream.ReadExactly(json);
        var dataStart = 8 + (long)headerLength;
        return Parse(json, path, dataStart, fileLength - dataStart);
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    static SafeTensorsHeader Parse(byte[] bytes, string path, long dataStart, long dataLength)
    {
        string json;
        try
        {
            json = StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new TensorFileException($"{path}: the header is not valid UTF-8");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new TensorFileException($"{path}: the header is not valid JSON ({e.Message})");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new TensorFileException($"{path}: the header is a JSON {document.RootElement.ValueKind}, not an object");

            var entries = new List<SafeTensorsEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                    throw new TensorFileException($"{path}: the header names '{property.Name}' more than once");
                if (property.Name == MetadataKey)
                    ReadMetadata(property.Value, path, metadata);
                else
                    entries.Add(ReadEntry(property.Name, property.Value, path));
            }

            CheckCoverage(entries, path, dataLength);
            return new SafeTensorsHeader(dataStart, dataLength, entries, metadata);
        }
    }

    static void ReadMetadata(JsonElement value, string path, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new TensorFileException($"{path}: '{MetadataKey}' must be an object of strings, not a JSON {value.ValueKind}");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new TensorFileException(
                    $"{path}: '{MetadataKey}' entry '{item.Name}' must be a string, not a JSON {item.Value.ValueKind}");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw new TensorFileException($"{path}: '{MetadataKey}' names '{item.Name}' more than once");
        }
    }

    static SafeTensorsEntry ReadEntry(string name, JsonElement value, string path)
    {
        string where = $"{path}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
            throw new TensorFileException($"{where} must be described by an object, not a JSON {value.ValueKind}");

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new TensorFileException($"{where} has no string 'dtype'");
        var dtype = dtypeElement.GetString()!;
        if (!SafeTensorsDType.TryParse(dtype, out var type))
            throw new TensorFileException(
                $"{where} has dtype '{dtype}', which Runtime cannot read (supported: {string.Join(" ", SafeTensorsDType.Names)})");

        var shape = ReadIntegers(value, "shape", where);
        var offsets = ReadIntegers(value, "data_offsets", where);
        if (offsets.Length != 2)
            throw new TensorFileException($"{where} has {offsets.Length} data_offsets; expected [begin, end]");
        var (begin, end) = (offsets[0], offsets[1]);
        if (end < begin)
            throw new TensorFileException($"{where} has data_offsets [{begin}, {end}]: end before begin");

        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (a, b) => a * b) * SafeTensorsDType.SizeOf(type));
        }
        catch (OverflowException)
        {
            throw new TensorFileException($"{where} has shape [{string.Join(", ", shape)}], too large to address");
        }
        if (end - begin != expected)
            throw new TensorFileException(
                $"{where} has shape [{string.Join(", ", shape)}] of {dtype}, which is {expected} bytes, but data_offsets [{begin}, {end}] span {end - begin} bytes");

        return new SafeTensorsEntry(name, dtype, type, shape, begin, end);
    }

    static long[] ReadIntegers(JsonElement value, string key, string where)
    {
        if (!value.TryGetProperty(key, out var array) || array.ValueKind != JsonValueKind.Array)
            throw new TensorFileException($"{where} has no '{key}' array");
        var result = new long[array.GetArrayLength()];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var n) || n < 0)
                throw new TensorFileException($"{where}: '{key}' holds {item.GetRawText()}, not a non-negative integer");
            result[i++] = n;
        }
        return result;
    }

    /// <summary>
    /// Sorts entries into data-buffer order and checks that they tile the buffer exactly: a tensor reaching past the
    /// end means a truncated file; a gap or an overlap means a writer bug, and either would silently hand out wrong
    /// bytes if accepted.
    /// </summary>
    static void CheckCoverage(List<SafeTensorsEntry> entries, string path, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));

        foreach (var entry in entries)
            if (entry.End > dataLength)
                throw new TensorFileException(
                    $"{path}: tensor '{entry.Name}' needs bytes [{entry.Begin}, {entry.End}) of the data buffer, but the file holds only {dataLength} bytes of data (truncated file)");

        long cursor = 0;
        SafeTensorsEntry? previous = null;
        foreach (var entry in entries)
        {
            if (entry.Begin < cursor)
                throw new TensorFileException(
                    $"{path}: tensor '{entry.Name}' at [{entry.Begin}, {entry.End}) overlaps tensor '{previous!.Name}' at [{previous.Begin}, {previous.End})");
            if (entry.Begin > cursor)
                throw new TensorFileException(
                    $"{path}: bytes [{cursor}, {entry.Begin}) of the data buffer, before tensor '{entry.Name}', belong to no tensor (a hole)");
            cursor = entry.End;
            previous = entry;
        }
        if (cursor != dataLength)
            throw new TensorFileException(
                $"{path}: the last {dataLength - cursor} bytes of the data buffer (from byte {cursor}) belong to no tensor");
    }
}
