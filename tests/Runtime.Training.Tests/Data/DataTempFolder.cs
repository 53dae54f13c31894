using System.Text;

namespace Runtime.Training.Tests.Data;

/// <summary>A fresh folder for data files and caches, deleted on dispose.</summary>
public sealed class DataTempFolder : IDisposable
{
    public DataTempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "rt-data-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Writes lines joined by "\n" (and a final "\n") as UTF-8 without BOM; returns the path.</summary>
    public string WriteJsonl(string name, params string[] lines)
    {
        var path = File(name);
        System.IO.File.WriteAllText(path, lines.Length == 0 ? "" : string.Join("\n", lines) + "\n", new UTF8Encoding(false));
        return path;
    }

    public string[] FileNames(string? folder = null) =>
        Directory.EnumerateFiles(folder ?? Path).Select(f => System.IO.Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
