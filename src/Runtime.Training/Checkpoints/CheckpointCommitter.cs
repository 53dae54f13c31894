using Runtime.Model.IO;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// The coordinator's side of a checkpoint (design.md, flow 3): <see cref="Begin"/> makes the temporary folder the
/// workers write their shards into; <see cref="Commit"/>, once every worker has reported its files, writes
/// <c>state.json</c> and then <c>manifest.json</c> (hashes of every file) into it, flushes, renames
/// <c>checkpoint-&lt;step&gt;.tmp</c> to <c>checkpoint-&lt;step&gt;</c> in one atomic step, flushes the output folder,
/// and only then applies retention. A crash at any moment leaves the previous committed checkpoints untouched; nothing
/// committed is overwritten.
/// </summary>
public sealed class CheckpointCommitter
{
    /// <param name="keepLast">Committed checkpoints to keep (the newest); 0 keeps all.</param>
    public CheckpointCommitter(string outputFolder, int keepLast)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keepLast);
        OutputFolder = Path.GetFullPath(outputFolder);
        KeepLast = keepLast;
    }

    public string OutputFolder { get; }

    public int KeepLast { get; }

    /// <summary>
    /// A fresh, empty <c>checkpoint-&lt;step&gt;.tmp</c> (what an interrupted earlier attempt left there is removed).
    /// Refuses a step that is already committed.
    /// </summary>
    public string Begin(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var final = CheckpointFolders.PathOf(OutputFolder, step);
        if (Directory.Exists(final))
            throw new CheckpointException($"{final}: step {step} is already committed; a checkpoint is never overwritten");
        var temporary = CheckpointFolders.TemporaryPathOf(OutputFolder, step);
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        AtomicFile.SyncFolder(OutputFolder);
        return temporary;
    }

    /// <summary>
    /// Writes a run-level file (not a worker's shard: e.g. the adapter_config.json or config.json of
    /// <see cref="CheckpointModel"/>) into step <paramref name="step"/>'s temporary folder, atomically and flushed, and
    /// returns its description, to be committed with the shards' (the manifest lists it with its hash).
    /// </summary>
    public CheckpointFile WriteFile(long step, string name, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (name != Path.GetFileName(name) || name is "" or "." or ".." or CheckpointFolders.ManifestFile or CheckpointFolders.StateFile
            || name.EndsWith(CheckpointFolders.ShardExtension, StringComparison.Ordinal))
            throw new ArgumentException($"'{name}' cannot be a run file of a checkpoint (a plain name, not a shard, the manifest or state.json)", nameof(name));
        var temporary = CheckpointFolders.TemporaryPathOf(OutputFolder, step);
        if (!Directory.Exists(temporary))
            throw new CheckpointException($"{temporary}: no temporary checkpoint folder to write '{name}' into (Begin({step}) was not called)");
        var path = Path.Combine(temporary, name);
        AtomicFile.Write(path, stream => stream.Write(bytes));
        return CheckpointFile.Of(path);
    }

    /// <summary>
    /// Commits step <paramref name="step"/> from the shard files the workers reported (their names, hashes and sizes).
    /// Every reported file must be in the temporary folder with its reported size; files nobody reported (leftovers of
    /// an interrupted write) are removed. Returns the committed folder.
    /// </summary>
    public string Commit(long step, CheckpointState state, IEnumerable<CheckpointFile> shardFiles)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Step != step) throw new ArgumentException($"the state is of step {state.Step}, not {step}", nameof(state));
        var temporary = CheckpointFolders.TemporaryPathOf(OutputFolder, step);
        var final = CheckpointFolders.PathOf(OutputFolder, step);
        if (Directory.Exists(final))
            throw new CheckpointException($"{final}: step {step} is already committed; a checkpoint is never overwritten");
        if (!Directory.Exists(temporary))
            throw new CheckpointException($"{temporary}: no temporary checkpoint folder to commit (Begin({step}) was not called, or it was removed)");

        var files = shardFiles.ToList();
        CheckReported(temporary, files);
        if (state.Model is { } model && !files.Any(f => f.Name == model.DescriptionFile))
            throw new CheckpointException(
                $"{temporary}: cannot commit: the state describes a {CheckpointModelState.MethodName(model.Method)} run but '{model.DescriptionFile}' was not written (CheckpointModel.Files)");
        RemoveUnreported(temporary, files);

        var statePath = Path.Combine(temporary, CheckpointFolders.StateFile);
        var stateJson = state.ToJson();
        AtomicFile.Write(statePath, stream => stream.Write(stateJson));
        files.Add(CheckpointFile.Of(statePath));

        // The manifest goes last: a folder with a manifest has every file the manifest names.
        var manifest = new CheckpointManifest(step, files).ToJson();
        AtomicFile.Write(Path.Combine(temporary, CheckpointFolders.ManifestFile), stream => stream.Write(manifest));
        AtomicFile.SyncFolder(temporary);

        Directory.Move(temporary, final);
        AtomicFile.SyncFolder(OutputFolder);

        ApplyRetention();
        return final;
    }

    /// <summary>
    /// Deletes committed checkpoints older than the newest <see cref="KeepLast"/>, and temporary or half-deleted
    /// folders of steps older than the newest committed one (abandoned saves). Runs after a commit, so the newest
    /// checkpoint is always complete before anything older goes. Returns the folders removed.
    /// </summary>
    public IReadOnlyList<string> ApplyRetention()
    {
        var committed = CheckpointFolders.Committed(OutputFolder);
        if (committed.Count == 0) return [];
        long newest = committed[^1].Step;
        var doomed = new List<string>();
        if (KeepLast > 0) doomed.AddRange(committed.Take(Math.Max(0, committed.Count - KeepLast)).Select(c => c.Path));
        foreach (var folder in Directory.EnumerateDirectories(OutputFolder))
            if (CheckpointFolders.TryParse(Path.GetFileName(folder), out var step, out var suffix) && suffix != "" && step < newest)
                doomed.Add(folder);

        foreach (var folder in doomed)
        {
            if (!Directory.Exists(folder)) continue; // a leftover ".deleting" already replaced by a newer deletion of its step
            // Rename first: a deletion cut short leaves a ".deleting" folder, never a damaged "checkpoint-<step>".
            var name = Path.GetFileName(folder);
            var deleting = CheckpointFolders.TryParse(name, out var step, out var suffix) && suffix == CheckpointFolders.DeletingSuffix
                ? folder
                : Path.Combine(OutputFolder, CheckpointFolders.Name(step) + CheckpointFolders.DeletingSuffix);
            if (deleting != folder)
            {
                if (Directory.Exists(deleting)) Directory.Delete(deleting, recursive: true);
                Directory.Move(folder, deleting);
            }
            Directory.Delete(deleting, recursive: true);
        }
        if (doomed.Count > 0) AtomicFile.SyncFolder(OutputFolder);
        return doomed;
    }

    static void CheckReported(string temporary, List<CheckpointFile> files)
    {
        var problems = new List<string>();
        foreach (var group in files.GroupBy(f => f.Name).Where(g => g.Count() > 1))
            problems.Add($"'{group.Key}' is reported {group.Count()} times");
        foreach (var file in files)
        {
            if (file.Name != Path.GetFileName(file.Name) || file.Name is CheckpointFolders.ManifestFile or CheckpointFolders.StateFile)
            {
                problems.Add($"'{file.Name}' cannot be a shard file name");
                continue;
            }
            var info = new FileInfo(Path.Combine(temporary, file.Name));
            if (!info.Exists) problems.Add($"'{file.Name}' was reported but is not there");
            else if (info.Length != file.Bytes) problems.Add($"'{file.Name}' is {info.Length} bytes, reported {file.Bytes}");
        }
        if (problems.Count > 0)
            throw new CheckpointException($"{temporary}: cannot commit: {string.Join("; ", problems)}");
    }

    static void RemoveUnreported(string temporary, List<CheckpointFile> files)
    {
        var reported = files.Select(f => f.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFiles(temporary))
            if (!reported.Contains(Path.GetFileName(path))) File.Delete(path);
    }
}
