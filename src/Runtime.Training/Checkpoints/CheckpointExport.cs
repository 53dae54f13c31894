using System.Text;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Training.Planning;
using static TorchSharp.torch;

namespace Runtime.Training.Checkpoints;

/// <summary>What <see cref="CheckpointExport.Export"/> wrote.</summary>
public sealed record ExportResult(string Output, FineTuneMethod Method, long Step, int Tensors, ScalarType DType,
    IReadOnlyList<string> CopiedFiles);

/// <summary>
/// Turns any committed checkpoint into the files users already have tools for (the command behind <c>rt export</c>):
/// a LoRA / QLoRA run becomes a PEFT adapter folder (adapter_config.json as the checkpoint holds it,
/// adapter_model.safetensors in fp32 under PEFT's names); a full fine-tuning run becomes a Hugging Face model folder
/// (every weight in the base config's torch_dtype, the base's config.json, and the tokenizer and generation files
/// copied from the base folder when it still exists). Tensors are assembled from however many workers' shards hold
/// them (<see cref="CheckpointReader"/>), one at a time, so a model export never holds more than one tensor.
/// The checkpoint is verified first: a temporary, incomplete or corrupt one is refused with the reader's error.
/// </summary>
public static class CheckpointExport
{
    public static ExportResult Export(string checkpointFolder, string outputFolder)
    {
        using var reader = CheckpointReader.Open(checkpointFolder);
        var model = reader.State.Model
            ?? throw new CheckpointException(
                $"{Path.Combine(reader.Location, CheckpointFolders.StateFile)}: has no \"model\" section (method and base model): the run that " +
                "wrote it did not say what it trains (TrainingLoopOptions.Model), so there is nothing to export it as");
        var output = Path.GetFullPath(outputFolder);
        var trimmed = Path.TrimEndingDirectorySeparator(output);
        if (trimmed == reader.Location || trimmed.StartsWith(reader.Location + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new IOException($"{output}: the output folder is (inside) the checkpoint; write to a new folder");
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new IOException($"{output}: exists and is not empty; export writes a new folder");

        return model.Method == FineTuneMethod.Full ? ExportModel(reader, model, output) : ExportAdapter(reader, model, output);
    }

    static ExportResult ExportAdapter(CheckpointReader reader, CheckpointModelState model, string output)
    {
        var (config, baseModel) = PeftAdapter.ReadConfig(reader.Location);
        var foreign = reader.Names.Where(n => !LoraInjector.IsAdapterParameter(n)).Order(StringComparer.Ordinal).ToList();
        if (foreign.Count > 0)
            throw new CheckpointException(
                $"{reader.Location}: a {CheckpointModelState.MethodName(model.Method)} checkpoint holds LoRA matrices only, but it has {string.Join(", ", foreign.Take(4))}{(foreign.Count > 4 ? ", ..." : "")}");

        var tensors = new List<(string Name, Tensor Tensor)>();
        try
        {
            foreach (var name in reader.Names.Order(StringComparer.Ordinal))
                tensors.Add((name, reader.Load(name, ScalarType.Float32)));
            PeftAdapter.Save(output, tensors, config, baseModel);
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
        return new ExportResult(output, model.Method, reader.Step, tensors.Count, ScalarType.Float32, []);
    }

    static ExportResult ExportModel(CheckpointReader reader, CheckpointModelState model, string output)
    {
        var configPath = reader.FilePath(HfFolderFiles.ConfigFileName)!;
        var configBytes = File.ReadAllBytes(configPath);
        var config = LlamaConfig.Parse(Encoding.UTF8.GetString(configBytes), configPath);
        var dtype = config.TorchDtype switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            var other => throw new ModelConfigException($"{configPath}: torch_dtype \"{other}\" is not float32, bfloat16 or float16"),
        };

        var specs = LlamaTensorNames.All(config).ToList();
        var missing = specs.Where(s => !reader.Contains(s.Name)).Select(s => s.Name).ToList();
        if (missing.Count > 0)
            throw new CheckpointException(
                $"{reader.Location}: a full fine-tuning checkpoint must hold every weight of the model; missing {missing.Count}: {string.Join(", ", missing.Take(6))}{(missing.Count > 6 ? ", ..." : "")}");
        foreach (var spec in specs)
        {
            var stored = reader.Describe(spec.Name).Shape;
            if (!stored.SequenceEqual(spec.Shape))
                throw new CheckpointException(
                    $"{reader.Location}: '{spec.Name}' is [{string.Join(", ", stored)}] in the checkpoint; its config.json says [{string.Join(", ", spec.Shape)}]");
        }

        var entries = specs.Select(s => new TensorEntry(s.Name, dtype, s.Shape, () => reader.Load(s.Name, dtype))).ToList();
        HfModelWriter.Write(output, entries);
        AtomicFile.Write(Path.Combine(output, HfFolderFiles.ConfigFileName), s => s.Write(configBytes));
        var copied = model.BaseModel is { } baseFolder && Directory.Exists(baseFolder)
            ? HfFolderFiles.CopyCompanions(baseFolder, output)
            : [];
        return new ExportResult(output, model.Method, reader.Step, entries.Count, dtype, copied);
    }
}
