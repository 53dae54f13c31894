using System.Text.Json;
using Runtime.Model.IO;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// Writes one worker's shard files into a checkpoint's temporary folder: <c>trainable.&lt;worker&gt;.safetensors</c>
/// and <c>optimizer.&lt;worker&gt;.safetensors</c>, each tensor under its canonical name, and in the file's
/// <c>__metadata__</c> (key <see cref="SlicesMetadataKey"/>) the full shape and slice each tensor covers, so the files
/// describe themselves and a reader can reassemble tensors that several workers split. A worker writes only what it
/// owns: no gather. Files appear complete or not at all and are flushed to disk (<see cref="SafeTensorsWriter"/>); the
/// returned descriptions (name, SHA-256, size) are what the worker reports to the committer.
/// </summary>
public sealed class CheckpointShardWriter
{
    /// <summary>Metadata entry of a shard file: JSON <c>{"name": {"full_shape": [..], "slice": {"dim", "start", "length"} or null}}</c>.</summary>
    public const string SlicesMetadataKey = "runtime.slices";

    public CheckpointShardWriter(string temporaryFolder, string worker)
    {
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(temporaryFolder));
        if (!CheckpointFolders.TryParse(name, out _, out var suffix) || suffix != CheckpointFolders.TemporarySuffix)
            throw new CheckpointException(
                $"{temporaryFolder}: shards are written into a temporary 'checkpoint-<step>{CheckpointFolders.TemporarySuffix}' folder, never into a committed one");
        if (!Directory.Exists(temporaryFolder))
            throw new CheckpointException($"{temporaryFolder}: the temporary checkpoint folder does not exist (the committer's Begin creates it)");
        Folder = temporaryFolder;
        Worker = CheckpointFolders.CheckWorker(worker);
    }

    public string Folder { get; }

    public string Worker { get; }

    /// <summary>Writes both of the worker's files and returns their descriptions.</summary>
    public IReadOnlyList<CheckpointFile> Write(IEnumerable<ShardTensor> trainable, IEnumerable<ShardTensor> optimizer) =>
        [WriteTrainable(trainable), WriteOptimizer(optimizer)];

    public CheckpointFile WriteTrainable(IEnumerable<ShardTensor> tensors) =>
        WriteFile(CheckpointFolders.TrainableFile(Worker), tensors);

    public CheckpointFile WriteOptimizer(IEnumerable<ShardTensor> tensors) =>
        WriteFile(CheckpointFolders.OptimizerFile(Worker), tensors);

    CheckpointFile WriteFile(string fileName, IEnumerable<ShardTensor> tensors)
    {
        var path = Path.Combine(Folder, fileName);
        var list = tensors.ToList();
        foreach (var t in list) Check(t, path);
        SafeTensorsWriter.Write(path, list.Select(t => TensorEntry.Of(t.Name, t.Value)),
            new Dictionary<string, string> { [SlicesMetadataKey] = SlicesJson(list) });
        return CheckpointFile.Of(path);
    }

    static void Check(ShardTensor t, string path)
    {
        var (full, slice) = (t.Placement.FullShape, t.Placement.Slice);
        if (slice is { } s && (s.Dim < 0 || s.Dim >= full.Length || s.Start < 0 || s.Length < 1 || s.Start + s.Length > full[s.Dim]))
            throw new ArgumentException(
                $"{path}: tensor '{t.Name}': slice dim {s.Dim} [{s.Start}, {s.Start + s.Length}) does not fit the full shape [{string.Join(", ", full)}]");
        if (!t.Value.shape.SequenceEqual(t.Placement.PartShape))
            throw new ArgumentException(
                $"{path}: tensor '{t.Name}' is [{string.Join(", ", t.Value.shape)}] but its placement says [{string.Join(", ", t.Placement.PartShape)}]");
    }

    static string SlicesJson(IEnumerable<ShardTensor> tensors)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var t in tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                json.WriteStartObject(t.Name);
                json.WriteStartArray("full_shape");
                foreach (var d in t.Placement.FullShape) json.WriteNumberValue(d);
                json.WriteEndArray();
                if (t.Placement.Slice is { } s)
                {
                    json.WriteStartObject("slice");
                    json.WriteNumber("dim", s.Dim);
                    json.WriteNumber("start", s.Start);
                    json.WriteNumber("length", s.Length);
                    json.WriteEndObject();
                }
                else
                {
                    json.WriteNull("slice");
                }
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
