using System.Text.Json;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// <c>manifest.json</c>: the step and every file of the checkpoint (shards and state.json) with its SHA-256 and size.
/// It is written last, inside the temporary folder, before the folder is renamed into place, so a folder named
/// <c>checkpoint-&lt;step&gt;</c> with a manifest whose hashes match is complete by construction.
/// </summary>
public sealed record CheckpointManifest(long Step, IReadOnlyList<CheckpointFile> Files)
{
    public const string Format = "runtime-checkpoint";
    public const int Version = 1;

    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("format", Format);
            json.WriteNumber("version", Version);
            json.WriteNumber("step", Step);
            json.WriteStartArray("files");
            foreach (var file in Files.OrderBy(f => f.Name, StringComparer.Ordinal))
            {
                json.WriteStartObject();
                json.WriteString("name", file.Name);
                json.WriteString("sha256", file.Sha256);
                json.WriteNumber("bytes", file.Bytes);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    public static CheckpointManifest Read(string file)
    {
        using var document = JsonFields.Parse(file);
        var root = new JsonFields(document.RootElement, file).CheckFormat(Format, Version);
        var files = root.Array("files").Select(f => new CheckpointFile(f.String("name"), f.String("sha256"), f.Long("bytes"))).ToList();
        foreach (var f in files)
            if (f.Name != Path.GetFileName(f.Name) || f.Name is "" or "." or "..")
                throw new CheckpointException($"{file}: file name '{f.Name}' is not a plain name inside the checkpoint folder");
        var duplicate = files.GroupBy(f => f.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new CheckpointException($"{file}: '{duplicate.Key}' is listed more than once");
        return new CheckpointManifest(root.Long("step"), files);
    }
}
