using System.Text;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Model.Tokenization;
using Runtime.Training.Checkpoints;
using Runtime.Training.Planning;
using static TorchSharp.torch;

namespace Runtime.Cluster.Driving;

/// <summary>
/// The driver's files in the run's output folder: committing checkpoints from the workers' shards, and the final
/// export (<c>&lt;output&gt;/adapter</c>, a PEFT folder, for LoRA and QLoRA; <c>&lt;output&gt;/model</c>, a Hugging Face
/// folder, for full fine-tuning), read back from the final checkpoint.
/// </summary>
public static class RunOutputs
{
    public const string AdapterFolder = "adapter";
    public const string ModelFolder = "model";
    public const string TensorBoardFolder = "tensorboard";

    /// <summary>
    /// A fresh temporary folder for checkpoint <paramref name="step"/>, or null when that step is already committed on
    /// disk: an earlier attempt committed it and stopped before the coordinator recorded it. Training is deterministic,
    /// so that folder holds what this attempt would write; it is verified and adopted instead of written again (a
    /// committed checkpoint is never overwritten).
    /// </summary>
    public static string? BeginCheckpoint(string output, long step)
    {
        var committed = CheckpointFolders.PathOf(output, step);
        if (!Directory.Exists(committed)) return new CheckpointCommitter(output, keepLast: 0).Begin(step);
        using var reader = CheckpointReader.Open(committed); // verifies every file against the manifest
        return null;
    }

    /// <summary>
    /// Writes what the run trains (<see cref="RunRecipe.CheckpointModel"/>: adapter_config.json or the base's config.json,
    /// so `rt export` can turn any checkpoint into a PEFT adapter or a model), state.json and the manifest, and renames
    /// the folder into place. Retention is not applied here: the coordinator must record the new checkpoint before an
    /// older one may go (<see cref="ApplyRetention"/>).
    /// </summary>
    public static string CommitCheckpoint(RunSpec spec, CheckpointState state, IEnumerable<CheckpointFile> shards)
    {
        var committer = new CheckpointCommitter(spec.Output, keepLast: 0);
        var model = RunRecipe.CheckpointModel(spec);
        var files = shards.Concat(model.Files().Select(f => committer.WriteFile(state.Step, f.Name, f.Bytes))).ToList();
        return committer.Commit(state.Step, state with { Model = model.State }, files);
    }

    public static IReadOnlyList<string> ApplyRetention(string output, int keep) => new CheckpointCommitter(output, keep).ApplyRetention();

    /// <summary>Writes the run's result from its final checkpoint and returns the folder written.</summary>
    public static string Export(RunSpec spec, string checkpointFolder)
    {
        using var scope = NewDisposeScope();
        using var reader = CheckpointReader.Open(checkpointFolder);
        if (RunRecipe.Lora(spec) is { } lora)
        {
            var folder = Path.Combine(spec.Output, AdapterFolder);
            var tensors = reader.Names.Order(StringComparer.Ordinal).Select(n => (n, reader.Load(n, ScalarType.Float32))).ToList();
            PeftAdapter.Save(folder, tensors, lora, spec.Model);
            return folder;
        }
        return ExportModel(spec, reader);
    }

    static string ExportModel(RunSpec spec, CheckpointReader reader)
    {
        var folder = Path.Combine(spec.Output, ModelFolder);
        var bf16 = spec.Train.Precision == ComputePrecision.Bf16;
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var config = LlamaConfig.Load(spec.Model) with { TorchDtype = bf16 ? "bfloat16" : "float32" };
        var entries = reader.Names.Order(StringComparer.Ordinal)
            .Select(n => new TensorEntry(n, dtype, reader.Describe(n).Shape, () => reader.Load(n, dtype)))
            .ToList();
        HfModelWriter.Write(folder, entries);
        AtomicFile.Write(Path.Combine(folder, "config.json"), s => s.Write(Encoding.UTF8.GetBytes(config.ToJson())));
        if (Llama3Tokenizer.TryFind(spec.Model) is not null) Llama3Tokenizer.CopyFiles(spec.Model, folder);
        return folder;
    }
}
