using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// Names inside a run's output folder: <c>checkpoint-&lt;step&gt;</c> for a committed checkpoint (it has a manifest;
/// it was renamed into place complete), <c>checkpoint-&lt;step&gt;.tmp</c> while workers write into it, and
/// <c>checkpoint-&lt;step&gt;.deleting</c> while retention removes it. Inside a checkpoint: <see cref="ManifestFile"/>,
/// <see cref="StateFile"/>, and per worker <c>trainable.&lt;worker&gt;.safetensors</c> and
/// <c>optimizer.&lt;worker&gt;.safetensors</c>.
/// </summary>
public static partial class CheckpointFolders
{
    public const string Prefix = "checkpoint-";
    public const string TemporarySuffix = ".tmp";
    public const string DeletingSuffix = ".deleting";
    public const string ManifestFile = "manifest.json";
    public const string StateFile = "state.json";
    public const string TrainablePrefix = "trainable.";
    public const string OptimizerPrefix = "optimizer.";
    public const string ShardExtension = ".safetensors";

    public static string Name(long step) => Prefix + step.ToString(CultureInfo.InvariantCulture);

    public static string PathOf(string outputFolder, long step) => Path.Combine(outputFolder, Name(step));

    public static string TemporaryPathOf(string outputFolder, long step) => PathOf(outputFolder, step) + TemporarySuffix;

    public static string TrainableFile(string worker) => TrainablePrefix + CheckWorker(worker) + ShardExtension;

    public static string OptimizerFile(string worker) => OptimizerPrefix + CheckWorker(worker) + ShardExtension;

    /// <summary>Committed checkpoints of an output folder, oldest first (an absent folder has none).</summary>
    public static IReadOnlyList<(long Step, string Path)> Committed(string outputFolder)
    {
        if (!Directory.Exists(outputFolder)) return [];
        return Directory.EnumerateDirectories(outputFolder)
            .Select(path => (Ok: TryParse(System.IO.Path.GetFileName(path), out var step, out var suffix) && suffix == "", step, path))
            .Where(c => c.Ok).Select(c => (c.step, c.path)).OrderBy(c => c.step).ToList();
    }

    /// <summary>The newest committed checkpoint of an output folder, or null.</summary>
    public static string? Latest(string outputFolder) => Committed(outputFolder) is { Count: > 0 } all ? all[^1].Path : null;

    /// <summary>Parses <c>checkpoint-&lt;step&gt;</c> with an optional suffix (".tmp", ".deleting").</summary>
    public static bool TryParse(string folderName, out long step, out string suffix)
    {
        var match = FolderPattern().Match(folderName);
        step = 0;
        suffix = "";
        if (!match.Success || !long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out step)) return false;
        suffix = match.Groups[2].Value;
        return true;
    }

    /// <summary>Worker ids go into file names: letters, digits, '.', '-', '_' (e.g. "0" or "d0.p1.t0").</summary>
    public static string CheckWorker(string worker)
    {
        if (string.IsNullOrEmpty(worker) || !WorkerPattern().IsMatch(worker))
            throw new ArgumentException($"worker id '{worker}' must be letters, digits, '.', '-' or '_' (it names the worker's shard files)", nameof(worker));
        return worker;
    }

    [GeneratedRegex(@"^checkpoint-(\d+)(|\.tmp|\.deleting)$", RegexOptions.CultureInvariant)]
    private static partial Regex FolderPattern();

    [GeneratedRegex(@"^[A-Za-z0-9._-]+$", RegexOptions.CultureInvariant)]
    private static partial Regex WorkerPattern();
}
