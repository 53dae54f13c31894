using Microsoft.Data.Sqlite;
using Runtime.Model.Config;

namespace Runtime.Cluster.Tests.Support;

/// <summary>The repository's files (hocon/...), found from the test assembly's folder.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Hocon(string relative) => Path.Combine(Root, "hocon", relative);

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln")))
                return dir.FullName;
        throw new InvalidOperationException($"no Runtime.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>A fresh folder, deleted afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "rt-cluster-tests", Guid.NewGuid().ToString("N")[..12]);

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // a straggling handle: the OS cleans the temp folder
        }
    }
}

/// <summary>Model folders and data files a spec can point at.</summary>
public static class Fixtures
{
    /// <summary>A model folder holding only config.json (all the validator reads).</summary>
    public static string Model(string folder, LlamaConfig config, string? extraJson = null)
    {
        Directory.CreateDirectory(folder);
        var json = config.ToJson();
        if (extraJson is not null) json = json.TrimEnd().TrimEnd('}') + "," + extraJson + "}\n";
        File.WriteAllText(System.IO.Path.Combine(folder, "config.json"), json);
        return folder;
    }

    public static string Data(string file)
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(file)!);
        File.WriteAllText(file, "{\"instruction\": \"What is 1 plus 1?\", \"output\": \"2\"}\n");
        return file;
    }
}
