using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using System.CommandLine;
using Runtime.Model.Tokenization;
using static TorchSharp.torch;

namespace Runtime.Cli.Commands;

/// <summary>What the inference commands load from a Hugging Face model folder: the model and, when present, its tokenizer.</summary>
public static class ModelFolder
{
    public static ScalarType ParseDType(string name) => name switch
    {
        "fp32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new UsageException($"--dtype must be fp32 or bf16 (got '{name}')"),
    };

    /// <summary>
    /// The whole model for inference (no gradients), read tensor by tensor from the folder (a 4-bit folder is
    /// dequantized), with a PEFT adapter attached when given.
    /// </summary>
    public static LlamaSlice LoadForInference(string folder, ScalarType dtype, string? adapter = null)
    {
        if (!Directory.Exists(folder)) throw new UsageException($"--model {folder}: no such folder");
        if (adapter is not null && !Directory.Exists(adapter)) throw new UsageException($"--adapter {adapter}: no such folder");
        using var source = new HfModelFolder(folder);
        var slice = LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions { DType = dtype, RequiresGrad = false });
        try
        {
            if (adapter is not null) PeftAdapter.LoadInto(slice, adapter);
            return slice;
        }
        catch
        {
            slice.Dispose();
            throw;
        }
    }

    public static Option<string?> AdapterOption() =>
        new("--adapter") { Description = "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply" };

    /// <summary>The tokenizer given explicitly, else the one stored with the model; null when there is none.</summary>
    public static Llama3Tokenizer? TryLoadTokenizer(string modelFolder, string? explicitPath)
    {
        var path = explicitPath ?? Llama3Tokenizer.TryFind(modelFolder);
        return path is null ? null : Llama3Tokenizer.Load(path);
    }

    public static Llama3Tokenizer LoadTokenizer(string modelFolder, string? explicitPath) =>
        TryLoadTokenizer(modelFolder, explicitPath)
        ?? throw new UsageException(
            $"{modelFolder} has no tokenizer.json or {Llama3Tokenizer.TiktokenModelFileInFolder}; pass --tokenizer PATH");
}
