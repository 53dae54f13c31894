using System.Text.Json;
using Runtime.Model.Config;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// A Hugging Face model folder: config.json plus either one model.safetensors or model.safetensors.index.json
/// (<c>{"metadata": {"total_size": N}, "weight_map": {name: file}}</c>) and the shards it names. Like transformers,
/// a single model.safetensors wins over an index when both exist. Shards are opened on first use, so a worker that
/// owns a few layers reads only the headers of the shards holding them.
/// </summary>
public sealed class HfModelFolder : ITensorSource
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Tensor name to the file (relative to the folder) that holds it.</summary>
    readonly Dictionary<string, string> _weightMap;
    readonly Dictionary<string, SafeTensorsFile> _shards = new(StringComparer.Ordinal);
    readonly object _gate = new();
    readonly string? _indexPath;
    LlamaConfig? _config;

    public HfModelFolder(string folder)
    {
        Location = Path.GetFullPath(folder);
        if (!Directory.Exists(Location))
            throw new TensorFileException($"{Location}: no such folder");

        var single = Path.Combine(Location, SingleFileName);
        var index = Path.Combine(Location, IndexFileName);
        if (File.Exists(single))
        {
            var file = new SafeTensorsFile(single);
            _shards[SingleFileName] = file;
            _weightMap = file.Names.ToDictionary(n => n, _ => SingleFileName, StringComparer.Ordinal);
        }
        else if (File.Exists(index))
        {
            _indexPath = index;
            (_weightMap, IndexTotalSize) = ReadIndex(index, Location);
        }
        else
        {
            throw new TensorFileException($"{Location}: neither {SingleFileName} nor {IndexFileName} is here");
        }
        Names = _weightMap.Keys.Order(StringComparer.Ordinal).ToArray();
        Files = _weightMap.Values.Distinct().Order(StringComparer.Ordinal).Select(f => Path.Combine(Location, f)).ToArray();
    }

    /// <summary>The folder.</summary>
    public string Location { get; }

    public bool IsSharded => _indexPath is not null;

    /// <summary>The index's <c>metadata.total_size</c> (bytes of all tensors), when the folder is sharded and says it.</summary>
    public long? IndexTotalSize { get; }

    /// <summary>The safetensors files the folder's tensors live in (full paths).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>config.json of the folder, read on first use.</summary>
    public LlamaConfig Config => _config ??= LlamaConfig.Load(Location);

    /// <summary>Tensor names, sorted.</summary>
    public IReadOnlyCollection<string> Names { get; }

    public bool Contains(string name) => _weightMap.ContainsKey(name);

    public TensorInfo Describe(string name) => ShardHolding(name).Describe(name);

    public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null) =>
        ShardHolding(name).Load(name, dtype, slice);

    /// <summary>The file (relative to the folder) that holds <paramref name="name"/>.</summary>
    public string FileOf(string name) => _weightMap.TryGetValue(name, out var file)
        ? file
        : throw new TensorFileException(IsSharded
            ? $"{Location}: no tensor '{name}' ({IndexFileName} does not list it)"
            : $"{Location}: no tensor '{name}' in {SingleFileName}");

    SafeTensorsFile ShardHolding(string name)
    {
        var fileName = FileOf(name);
        SafeTensorsFile shard;
        lock (_gate)
        {
            if (!_shards.TryGetValue(fileName, out shard!))
            {
                shard = new SafeTensorsFile(Path.Combine(Location, fileName));
                _shards[fileName] = shard;
            }
        }
        if (!shard.Contains(name))
            throw new TensorFileException(
                $"{_indexPath}: weight_map puts tensor '{name}' in {fileName}, but {shard.Location} has no such tensor");
        return shard;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var shard in _shards.Values) shard.Dispose();
            _shards.Clear();
        }
    }

    static (Dictionary<string, string> WeightMap, long? TotalSize) ReadIndex(string path, string folder)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new TensorFileException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new TensorFileException($"{path}: not a JSON object");

            long? totalSize = null;
            if (root.TryGetProperty("metadata", out var metadata) && metadata.ValueKind == JsonValueKind.Object
                && metadata.TryGetProperty("total_size", out var total) && total.ValueKind != JsonValueKind.Null)
            {
                // transformers writes an integer; some tools write it as a float (e.g. 16060522496.0).
                if (total.ValueKind != JsonValueKind.Number || !total.TryGetDouble(out var bytes) || bytes < 0 || bytes != Math.Floor(bytes))
                    throw new TensorFileException($"{path}: 'metadata.total_size' is {total.GetRawText()}, not a byte count");
                totalSize = (long)bytes;
            }

            if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new TensorFileException($"{path}: no 'weight_map' object");

            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            var checkedFiles = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String || entry.Value.GetString() is not { Length: > 0 } file)
                    throw new TensorFileException($"{path}: weight_map entry '{entry.Name}' must be a file name, not {entry.Value.GetRawText()}");
                if (!weightMap.TryAdd(entry.Name, file))
                    throw new TensorFileException($"{path}: weight_map lists tensor '{entry.Name}' more than once");
                if (checkedFiles.Add(file))
                    CheckShardFile(path, folder, entry.Name, file);
            }
            if (weightMap.Count == 0)
                throw new TensorFileException($"{path}: weight_map is empty");
            return (weightMap, totalSize);
        }
    }

    /// <summary>Checked when the index is read, so a missing shard fails at open, not hours into a run.</summary>
    static void CheckShardFile(string indexPath, string folder, string tensor, string file)
    {
        var full = Path.GetFullPath(Path.Combine(folder, file));
        if (Path.IsPathRooted(file) || !full.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new TensorFileException($"{indexPath}: weight_map puts tensor '{tensor}' in '{file}', outside the folder");
        if (!File.Exists(full))
            throw new TensorFileException($"{indexPath}: weight_map puts tensor '{tensor}' in {file}, which does not exist");
    }
}
