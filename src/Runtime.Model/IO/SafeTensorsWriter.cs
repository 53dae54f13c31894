using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// Writes safetensors files the way the reference writer (huggingface/safetensors, used by transformers and PEFT)
/// does: tensors ordered by descending dtype alignment, then by name (so every tensor starts at a multiple of its
/// element size, and our files match theirs byte for byte); compact JSON with <c>"__metadata__"</c> first and
/// <c>"format": "pt"</c> in it; the header padded with spaces to a multiple of 8 bytes; the data buffer contiguous,
/// little-endian, row-major. Tensors are produced, written and disposed one at a time, and the file appears under
/// its name only when complete (<see cref="AtomicFile"/>).
/// </summary>
public static class SafeTensorsWriter
{
    /// <summary>Largest block handed to one write call (spans are int-sized; tensors can be larger).</summary>
    const int WriteChunkBytes = 1 << 30;

    /// <summary>Writes tensors that already exist; they stay the caller's.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors.Select(t => TensorEntry.Of(t.Key, t.Value)), metadata);

    /// <summary>
    /// Writes declared entries, producing each tensor only when its bytes are due. <paramref name="metadata"/> adds
    /// string entries to <c>__metadata__</c> next to <c>"format": "pt"</c>.
    /// </summary>
    public static void Write(string path, IEnumerable<TensorEntry> entries, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var location = Path.GetFullPath(path);
        var ordered = FileOrder(entries, location);
        var header = Header(ordered, metadata, location);

        AtomicFile.Write(location, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            var dataStart = stream.Position;
            foreach (var entry in ordered)
            {
                WriteTensor(stream, entry, location);
                // A wrong byte count would shift every later tensor: stop at the first one.
                var written = stream.Position - dataStart;
                if (written != entry.End)
                    throw new InvalidOperationException(
                        $"{location}: tensor '{entry.Entry.Name}' ended at data byte {written}, expected {entry.End}");
            }
        });
    }

    internal readonly record struct Placed(TensorEntry Entry, long Begin, long End);

    /// <summary>The reference writer's order: descending dtype alignment rank, then name by UTF-8 bytes.</summary>
    internal static List<Placed> FileOrder(IEnumerable<TensorEntry> entries, string location)
    {
        var list = entries.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in list)
        {
            if (string.IsNullOrEmpty(entry.Name) || entry.Name == SafeTensorsHeader.MetadataKey)
                throw new ArgumentException($"{location}: '{entry.Name}' cannot name a tensor");
            if (!names.Add(entry.Name))
                throw new ArgumentException($"{location}: tensor '{entry.Name}' is given more than once");
            if (entry.Shape.Any(d => d < 0))
                throw new ArgumentException($"{location}: tensor '{entry.Name}' has a negative dimension in [{string.Join(", ", entry.Shape)}]");
            SafeTensorsDType.SizeOf(entry.DType); // throws for a dtype safetensors cannot hold
        }

        var keyed = list.Select(e => (Entry: e, Rank: SafeTensorsDType.WriterRank(e.DType), Utf8: Encoding.UTF8.GetBytes(e.Name)))
            .ToList();
        keyed.Sort((a, b) => a.Rank != b.Rank ? b.Rank.CompareTo(a.Rank) : a.Utf8.AsSpan().SequenceCompareTo(b.Utf8));

        var placed = new List<Placed>(keyed.Count);
        long offset = 0;
        foreach (var (entry, _, _) in keyed)
        {
            var bytes = entry.ByteCount;
            placed.Add(new Placed(entry, offset, offset + bytes));
            offset += bytes;
        }
        return placed;
    }

    /// <summary>The header JSON, padded with spaces to a multiple of 8 bytes.</summary>
    internal static byte[] Header(IReadOnlyList<Placed> placed, IReadOnlyDictionary<string, string>? metadata, string location)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject(SafeTensorsHeader.MetadataKey);
            json.WriteString("format", "pt");
            foreach (var (key, value) in (metadata ?? new Dictionary<string, string>()).OrderBy(m => m.Key, StringComparer.Ordinal))
            {
                if (key == "format")
                {
                    if (value != "pt")
                        throw new ArgumentException($"{location}: metadata 'format' must be \"pt\" (Hugging Face loaders expect it), not \"{value}\"");
                    continue;
                }
                json.WriteString(key, value);
            }
            json.WriteEndObject();
            foreach (var (entry, begin, end) in placed)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", SafeTensorsDType.NameOf(entry.DType));
                json.WriteStartArray("shape");
                foreach (var d in entry.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(begin);
                json.WriteNumberValue(end);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }

        var padded = (buffer.Length + 7) / 8 * 8;
        if (padded > SafeTensorsHeader.MaxHeaderBytes)
            throw new ArgumentException($"{location}: the header would be {padded} bytes, more than safetensors allows");
        while (buffer.Length < padded) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    static unsafe void WriteTensor(FileStream stream, Placed placed, string location)
    {
        var entry = placed.Entry;
        using var scope = torch.NewDisposeScope();
        var produced = entry.Produce()
            ?? throw new InvalidOperationException($"{location}: the producer of tensor '{entry.Name}' returned null");
        try
        {
            if (!produced.shape.SequenceEqual(entry.Shape))
                throw new InvalidOperationException(
                    $"{location}: tensor '{entry.Name}' was declared [{string.Join(", ", entry.Shape)}] but produced [{string.Join(", ", produced.shape)}]");

            var data = produced;
            if (data.dtype != entry.DType) data = data.to(entry.DType);
            if (data.device_type != DeviceType.CPU) data = data.cpu();
            if (!data.is_contiguous()) data = data.contiguous();

            var pointer = TensorMemory.DataPointer(data);
            var remaining = TensorMemory.ByteCount(data);
            while (remaining > 0)
            {
                var chunk = (int)Math.Min(remaining, WriteChunkBytes);
                stream.Write(new ReadOnlySpan<byte>(pointer, chunk));
                pointer += chunk;
                remaining -= chunk;
            }
        }
        finally
        {
            // The producer may hand over a tensor made outside our scope: it is ours to free either way.
            produced.Dispose();
        }
    }
}
