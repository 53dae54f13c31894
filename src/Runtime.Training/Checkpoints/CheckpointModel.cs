using System.Text;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Training.Planning;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// What a run trains and on which base, so that any committed checkpoint can be exported without the run's spec.
/// Each fact has one home in the checkpoint folder:
/// <list type="bullet">
/// <item><c>state.json</c>'s <c>"model"</c>: the method (full, lora, qlora) and the base model folder.</item>
/// <item>LoRA / QLoRA: <c>adapter_config.json</c>, PEFT's own file (r, alpha, dropout, targets, rsLoRA), written as
/// the exported adapter will carry it; its <c>base_model_name_or_path</c> is the same base folder.</item>
/// <item>Full fine-tuning: <c>config.json</c>, the base's own bytes (architecture and <c>torch_dtype</c>, the dtype
/// the exported weights are written in).</item>
/// </list>
/// Both files are listed in the manifest with their hashes like the shards.
/// </summary>
public sealed record CheckpointModel
{
    CheckpointModel(FineTuneMethod method, string? baseModel, LoraConfig? lora, byte[]? baseConfigJson)
    {
        Method = method;
        BaseModel = baseModel;
        Lora = lora;
        BaseConfigJson = baseConfigJson;
    }

    public FineTuneMethod Method { get; }

    /// <summary>The base model folder (absolute), or a hub name; null when the base was built in memory.</summary>
    public string? BaseModel { get; }

    /// <summary>LoRA / QLoRA: the adapter's hyper-parameters; null for full fine-tuning.</summary>
    public LoraConfig? Lora { get; }

    /// <summary>Full fine-tuning: the base's config.json as stored; null for adapters.</summary>
    public byte[]? BaseConfigJson { get; }

    /// <summary>A LoRA (dense base) or QLoRA (4-bit base) run over the base model in <paramref name="baseModel"/>.</summary>
    public static CheckpointModel Adapter(LoraConfig lora, string? baseModel, bool quantizedBase = false)
    {
        ArgumentNullException.ThrowIfNull(lora);
        return new(quantizedBase ? FineTuneMethod.Qlora : FineTuneMethod.Lora, Absolute(baseModel), lora, null);
    }

    /// <summary>Full fine-tuning of the model folder <paramref name="baseModelFolder"/>: its config.json is kept as is.</summary>
    public static CheckpointModel Full(string baseModelFolder)
    {
        var path = Path.Combine(baseModelFolder, HfFolderFiles.ConfigFileName);
        if (!File.Exists(path)) throw new ModelConfigException($"{Path.GetFullPath(path)}: not found (full fine-tuning keeps the base's config.json)");
        var bytes = File.ReadAllBytes(path);
        LlamaConfig.Parse(Encoding.UTF8.GetString(bytes), path); // refuse a config export could not read back
        return new(FineTuneMethod.Full, Absolute(baseModelFolder), null, bytes);
    }

    /// <summary>Full fine-tuning of a model built in memory (no folder): its config as <see cref="LlamaConfig.ToJson"/> writes it.</summary>
    public static CheckpointModel Full(LlamaConfig config, string? baseModel = null) =>
        new(FineTuneMethod.Full, Absolute(baseModel), null, Encoding.UTF8.GetBytes(config.ToJson()));

    /// <summary>The state.json part.</summary>
    public CheckpointModelState State => new(Method, BaseModel);

    /// <summary>The files this model description adds to a checkpoint folder, by name.</summary>
    public IEnumerable<(string Name, byte[] Bytes)> Files()
    {
        if (Lora is not null) yield return (PeftAdapterConfig.FileName, Encoding.UTF8.GetBytes(PeftAdapterConfig.ToJson(Lora, BaseModel)));
        if (BaseConfigJson is not null) yield return (HfFolderFiles.ConfigFileName, BaseConfigJson);
    }

    static string? Absolute(string? path) => path is not null && Directory.Exists(path) ? Path.GetFullPath(path) : path;
}

/// <summary>state.json's <c>"model"</c>: <c>{"method": "lora", "base_model": "/models/tiny"}</c>.</summary>
public sealed record CheckpointModelState(FineTuneMethod Method, string? BaseModel)
{
    /// <summary>The file that carries the rest of what an export needs: adapter_config.json or config.json.</summary>
    public string DescriptionFile => Method == FineTuneMethod.Full ? HfFolderFiles.ConfigFileName : PeftAdapterConfig.FileName;

    public static string MethodName(FineTuneMethod method) => method switch
    {
        FineTuneMethod.Full => "full",
        FineTuneMethod.Lora => "lora",
        FineTuneMethod.Qlora => "qlora",
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
    };

    public static FineTuneMethod ParseMethod(string name, string file) => name switch
    {
        "full" => FineTuneMethod.Full,
        "lora" => FineTuneMethod.Lora,
        "qlora" => FineTuneMethod.Qlora,
        _ => throw new CheckpointException($"{file}: 'model.method' is \"{name}\", not full, lora or qlora"),
    };
}
