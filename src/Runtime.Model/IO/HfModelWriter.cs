using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Runtime.Model.IO;

/// <summary>One safetensors file of a model folder and the tensors it holds, in the caller's order.</summary>
public sealed record HfShard(string FileName, IReadOnlyList<TensorEntry> Entries)
{
    public long ByteCount => Entries.Sum(e => e.ByteCount);
}

/// <summary>How a set of tensors is split into files, as transformers' save_pretrained would split it.</summary>
public sealed record HfModelLayout(IReadOnlyList<HfShard> Shards)
{
    /// <summary>The index's <c>total_size</c>: the bytes of all tensors (headers excluded).</summary>
    public long TotalSize => Shards.Sum(s => s.ByteCount);

    public bool IsSharded => Shards.Count > 1;

    public IReadOnlyDictionary<string, string> WeightMap =>
        Shards.SelectMany(s => s.Entries.Select(e => (e.Name, s.FileName))).ToDictionary(p => p.Name, p => p.FileName);
}

/// <summary>
/// Writes tensors as a Hugging Face model folder, like transformers' <c>save_pretrained</c>: one model.safetensors
/// when everything fits in one shard, otherwise model-00001-of-0000N.safetensors files plus
/// model.safetensors.index.json. Tensors are produced lazily, one at a time (see <see cref="TensorEntry"/>).
/// Each file is replaced atomically, but the folder as a whole is not: a crash between files can leave a mix of old
/// and new shards, so write into a fresh folder where that matters (checkpoints do).
/// </summary>
public static partial class HfModelWriter
{
    /// <summary>transformers' default <c>max_shard_size="5GB"</c>, which it reads as decimal gigabytes.</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>
    /// Splits <paramref name="entries"/> in their given order the way huggingface_hub's
    /// <c>split_torch_state_dict_into_shards</c> does: a tensor that would push the current shard past
    /// <paramref name="maxShardBytes"/> starts a new shard; a tensor larger than the limit by itself gets a shard of its
    /// own, placed when it is met (before the shard being filled).
    /// </summary>
    public static HfModelLayout Plan(IReadOnlyList<TensorEntry> entries, long maxShardBytes = DefaultMaxShardBytes)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), "must be positive");

        var groups = new List<List<TensorEntry>>();
        var current = new List<TensorEntry>();
        long currentBytes = 0;
        foreach (var entry in entries)
        {
            var bytes = entry.ByteCount;
            if (bytes > maxShardBytes)
            {
                groups.Add([entry]);
                continue;
            }
            if (currentBytes + bytes > maxShardBytes && current.Count > 0)
            {
                groups.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(entry);
            currentBytes += bytes;
        }
        if (current.Count > 0 || groups.Count == 0) groups.Add(current);

        if (groups.Count == 1) return new HfModelLayout([new HfShard(HfModelFolder.SingleFileName, groups[0])]);
        return new HfModelLayout(groups
            .Select((g, i) => new HfShard($"model-{i + 1:D5}-of-{groups.Count:D5}.safetensors", g))
            .ToArray());
    }

    /// <summary>
    /// Writes the folder (creating it if needed) and removes model files of an earlier save that the new layout does
    /// not use (as save_pretrained does), so a reader never mixes the two. <paramref name="metadata"/> goes into every
    /// file's <c>__metadata__</c> next to <c>"format": "pt"</c>. Writes no config.json (see LlamaConfig.ToJson).
    /// </summary>
    public static HfModelLayout Write(string folder, IReadOnlyList<TensorEntry> entries,
        long maxShardBytes = DefaultMaxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var location = Path.GetFullPath(folder);
        var layout = Plan(entries, maxShardBytes);
        var duplicate = entries.GroupBy(e => e.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArgumentException($"{location}: tensor '{duplicate.Key}' is given more than once");

        Directory.CreateDirectory(location);
        foreach (var shard in layout.Shards)
            SafeTensorsWriter.Write(Path.Combine(location, shard.FileName), shard.Entries, metadata);

        var keep = layout.Shards.Select(s => s.FileName).ToHashSet(StringComparer.Ordinal);
        if (layout.IsSharded)
        {
            // A stale single file would win over the new index (readers prefer model.safetensors).
            DeleteIfStale(location, HfModelFolder.SingleFileName, keep);
            AtomicFile.Write(Path.Combine(location, HfModelFolder.IndexFileName), s => s.Write(IndexJson(layout)));
        }
        else
        {
            DeleteIfStale(location, HfModelFolder.IndexFileName, keep);
        }
        foreach (var file in Directory.EnumerateFiles(location).Select(Path.GetFileName))
            if (ShardName().IsMatch(file!))
                DeleteIfStale(location, file!, keep);
        return layout;
    }

    /// <summary>The index as transformers writes it: <c>json.dumps(index, indent=2, sort_keys=True) + "\n"</c>.</summary>
    internal static byte[] IndexJson(HfModelLayout layout)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions
               {
                   Indented = true, NewLine = "\n", Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
               }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", layout.TotalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, file) in layout.WeightMap.OrderBy(p => p.Key, StringComparer.Ordinal))
                json.WriteString(name, file);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    static void DeleteIfStale(string folder, string file, HashSet<string> keep)
    {
        if (!keep.Contains(file)) File.Delete(Path.Combine(folder, file));
    }

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardName();
}
