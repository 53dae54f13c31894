using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// A committed checkpoint, verified: opening it refuses a temporary (never committed) folder, a folder without a
/// manifest, and any file that is missing, of another size or with another SHA-256 than the manifest says, naming the
/// file. Then it indexes the shard files by canonical tensor name, so any layout can load any part: a full tensor
/// assembled from the slices several workers saved, or just the slice a new worker owns (design.md, flow 5).
/// As an <see cref="ITensorSource"/> it serves the trainable tensors (with full fine-tuning, every weight of the model).
/// </summary>
public sealed class CheckpointReader : ITensorSource
{
    readonly List<SafeTensorsFile> _files = [];
    readonly ShardedTensors _trainable;
    readonly ShardedTensors _optimizer;

    CheckpointReader(string folder, CheckpointManifest manifest, CheckpointState state)
    {
        Location = folder;
        Manifest = manifest;
        State = state;
        _trainable = new ShardedTensors("trainable", folder);
        _optimizer = new ShardedTensors("optimizer", folder);
    }

    public string Location { get; }

    public CheckpointManifest Manifest { get; }

    public CheckpointState State { get; }

    public long Step => Manifest.Step;

    /// <summary>Opens and verifies a committed checkpoint folder (every file's size and hash).</summary>
    public static CheckpointReader Open(string folder)
    {
        folder = Path.GetFullPath(Path.TrimEndingDirectorySeparator(folder));
        var name = Path.GetFileName(folder);
        if (CheckpointFolders.TryParse(name, out var step, out var suffix) && suffix != "")
            throw new CheckpointException(suffix == CheckpointFolders.TemporarySuffix
                ? $"{folder}: a temporary checkpoint folder: the save of step {step} was never committed (interrupted); load a committed 'checkpoint-<step>' folder"
                : $"{folder}: a checkpoint being deleted by retention; load a committed 'checkpoint-<step>' folder");
        if (!Directory.Exists(folder)) throw new CheckpointException($"{folder}: no such checkpoint folder");
        var manifestPath = Path.Combine(folder, CheckpointFolders.ManifestFile);
        if (!File.Exists(manifestPath))
            throw new CheckpointException($"{manifestPath}: missing: the checkpoint is incomplete (never committed) or not a checkpoint");

        var manifest = CheckpointManifest.Read(manifestPath);
        Verify(folder, manifest);
        if (!manifest.Files.Any(f => f.Name == CheckpointFolders.StateFile))
            throw new CheckpointException($"{manifestPath}: lists no {CheckpointFolders.StateFile}");
        var statePath = Path.Combine(folder, CheckpointFolders.StateFile);
        var state = CheckpointState.Read(statePath);
        if (state.Step != manifest.Step)
            throw new CheckpointException($"{statePath}: step {state.Step} differs from the manifest's {manifest.Step}");
        if (state.Model is { } model && !manifest.Files.Any(f => f.Name == model.DescriptionFile))
            throw new CheckpointException(
                $"{manifestPath}: state.json describes a {CheckpointModelState.MethodName(model.Method)} run but the manifest lists no {model.DescriptionFile}");

        var reader = new CheckpointReader(folder, manifest, state);
        try
        {
            foreach (var file in manifest.Files.Where(f => f.Name.EndsWith(CheckpointFolders.ShardExtension, StringComparison.Ordinal)))
            {
                var index = file.Name.StartsWith(CheckpointFolders.TrainablePrefix, StringComparison.Ordinal) ? reader._trainable
                    : file.Name.StartsWith(CheckpointFolders.OptimizerPrefix, StringComparison.Ordinal) ? reader._optimizer
                    : throw new CheckpointException($"{Path.Combine(folder, file.Name)}: neither a trainable nor an optimizer shard");
                var source = new SafeTensorsFile(Path.Combine(folder, file.Name));
                reader._files.Add(source);
                index.AddFile(source);
            }
            reader._trainable.CheckCoverage();
            reader._optimizer.CheckCoverage();
            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>Every listed file must be there with its size and hash; all problems are reported together.</summary>
    static void Verify(string folder, CheckpointManifest manifest)
    {
        var problems = new List<string>();
        foreach (var expected in manifest.Files)
        {
            var path = Path.Combine(folder, expected.Name);
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                problems.Add($"{path}: missing (listed in {CheckpointFolders.ManifestFile})");
                continue;
            }
            if (info.Length != expected.Bytes)
            {
                problems.Add($"{path}: {info.Length} bytes, the manifest says {expected.Bytes} (truncated or replaced)");
                continue;
            }
            var actual = CheckpointFile.Of(path);
            if (!string.Equals(actual.Sha256, expected.Sha256, StringComparison.OrdinalIgnoreCase))
                problems.Add($"{path}: SHA-256 {actual.Sha256} does not match the manifest's {expected.Sha256} (corrupt)");
        }
        if (problems.Count > 0)
            throw new CheckpointException($"{folder}: checkpoint of step {manifest.Step} failed verification: {string.Join("; ", problems)}");
    }

    /// <summary>
    /// The path of a verified non-tensor file of the checkpoint (state.json, adapter_config.json, config.json), or null
    /// when the manifest does not list it.
    /// </summary>
    public string? FilePath(string name) =>
        Manifest.Files.Any(f => f.Name == name) ? Path.Combine(Location, name) : null;

    /// <summary>Canonical names of the trainable tensors.</summary>
    public IReadOnlyCollection<string> Names => _trainable.Names;

    /// <summary>Names of the optimizer-state tensors ("&lt;parameter&gt;.exp_avg", "&lt;parameter&gt;.exp_avg_sq").</summary>
    public IReadOnlyCollection<string> OptimizerNames => _optimizer.Names;

    public bool Contains(string name) => _trainable.Contains(name);

    /// <summary>A trainable tensor's full shape and dtype (<see cref="TensorInfo.File"/> is the checkpoint folder).</summary>
    public TensorInfo Describe(string name)
    {
        var info = _trainable.Describe(name);
        return new TensorInfo(name, info.DType, info.FullShape, Location);
    }

    /// <summary>Where a trainable tensor's pieces are (which shard file holds which slice).</summary>
    public CheckpointTensorInfo DescribeTrainable(string name) => _trainable.Describe(name);

    public CheckpointTensorInfo DescribeOptimizer(string name) => _optimizer.Describe(name);

    /// <summary>A trainable tensor, whole or the <paramref name="slice"/> of it, assembled from every shard that holds part of it.</summary>
    public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null) => _trainable.Load(name, dtype, slice);

    public Tensor LoadOptimizer(string name, ScalarType? dtype = null, TensorSlice? slice = null) => _optimizer.Load(name, dtype, slice);

    /// <summary>
    /// The optimizer moments of the given parameters (by canonical name, each with the slice this worker owns), named
    /// as <see cref="Engine.OptimizerStep.ImportOptimizerState"/> expects. The caller disposes the tensors.
    /// </summary>
    public Dictionary<string, Tensor> LoadOptimizerState(IEnumerable<(string Parameter, TensorSlice? Slice)> parameters)
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (parameter, slice) in parameters)
                foreach (var suffix in new[] { Optim.AdamW.ExpAvgSuffix, Optim.AdamW.ExpAvgSqSuffix })
                    state[parameter + suffix] = _optimizer.Load(parameter + suffix, null, slice);
            return state;
        }
        catch
        {
            foreach (var t in state.Values) t.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
        _files.Clear();
    }
}
