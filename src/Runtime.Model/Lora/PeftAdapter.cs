using System.Text;
using System.Text.RegularExpressions;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Lora;

/// <summary>A PEFT adapter read into memory: its config and its matrices under canonical names (float32, CPU).</summary>
public sealed class LoadedPeftAdapter(LoraConfig config, string? baseModelNameOrPath, IReadOnlyDictionary<string, Tensor> tensors)
    : IDisposable
{
    public LoraConfig Config { get; } = config;

    public string? BaseModelNameOrPath { get; } = baseModelNameOrPath;

    /// <summary>"model.layers.{i}.self_attn.q_proj.lora_A.weight" [r, in], "....lora_B.weight" [out, r], ...</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; } = tensors;

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}

/// <summary>
/// A PEFT LoRA adapter folder (huggingface/peft's <c>save_pretrained</c> layout): <c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c>, whose tensors are named <c>base_model.model.</c> + the canonical parameter name,
/// e.g. <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c> for Runtime's
/// <c>model.layers.0.self_attn.q_proj.lora_A.weight</c> (PEFT wraps the model as <c>base_model.model</c> and drops the
/// adapter name "default" when saving).
/// </summary>
public static partial class PeftAdapter
{
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>What PEFT's wrapping (PeftModel.base_model = LoraModel, LoraModel.model = the HF model) adds to a name.</summary>
    public const string PeftPrefix = "base_model.model.";

    public static string ToPeftName(string canonicalName) => PeftPrefix + canonicalName;

    /// <summary>
    /// Writes the folder: the matrices (canonical names, float32) as <c>adapter_model.safetensors</c> under PEFT's names,
    /// then adapter_config.json. A new folder appears complete or not at all (written beside it, then renamed); in an
    /// existing folder each file is replaced atomically, the weights before the config.
    /// </summary>
    public static void Save(string folder, IEnumerable<(string Name, Tensor Tensor)> tensors, LoraConfig config,
        string? baseModelNameOrPath = null)
    {
        var target = Path.GetFullPath(folder);
        var list = tensors.ToList();
        CheckSaved(list, config, target);
        var entries = list.Select(t => new TensorEntry(ToPeftName(t.Name), ScalarType.Float32, t.Tensor.shape, () => t.Tensor.detach()));
        var configJson = Encoding.UTF8.GetBytes(PeftAdapterConfig.ToJson(config, baseModelNameOrPath));

        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var staging = Path.Combine(parent, $"{AtomicFile.TemporaryPrefix}{Guid.NewGuid():N}-{Path.GetFileName(target)}");
        try
        {
            SafeTensorsWriter.Write(Path.Combine(staging, WeightsFileName), entries);
            AtomicFile.Write(Path.Combine(staging, PeftAdapterConfig.FileName), s => s.Write(configJson));
            if (!Directory.Exists(target))
            {
                Directory.Move(staging, target);
                return;
            }
            foreach (var file in new[] { WeightsFileName, PeftAdapterConfig.FileName })
                File.Move(Path.Combine(staging, file), Path.Combine(target, file), overwrite: true);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>Reads and checks adapter_config.json alone.</summary>
    public static (LoraConfig Config, string? BaseModelNameOrPath) ReadConfig(string folder)
    {
        var path = Path.Combine(Path.GetFullPath(folder), PeftAdapterConfig.FileName);
        if (!Directory.Exists(folder)) throw new PeftAdapterException($"{Path.GetFullPath(folder)}: no such adapter folder");
        if (!File.Exists(path)) throw new PeftAdapterException($"{path}: not found (a PEFT adapter folder needs it)");
        return PeftAdapterConfig.Parse(File.ReadAllText(path), path);
    }

    /// <summary>
    /// Reads the whole adapter into memory (float32), checking that every tensor is a LoRA matrix of a configured
    /// target, that each A has its B, and that the ranks are r. Shapes against a model are checked by
    /// <see cref="LoadInto"/>.
    /// </summary>
    public static LoadedPeftAdapter Load(string folder)
    {
        var (config, baseModel) = ReadConfig(folder);
        using var file = OpenWeights(folder);
        var names = ParseNames(file, config);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (peftName, canonical) in names)
            {
                var t = file.Load(peftName, ScalarType.Float32);
                tensors[canonical.Name] = t;
                if (RankError(canonical, t.shape, config) is { } error) throw new PeftAdapterException($"{file.Location}: {error}");
            }
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return new LoadedPeftAdapter(config, baseModel, tensors);
    }

    /// <summary>
    /// Attaches the adapter in <paramref name="folder"/> to the layers <paramref name="slice"/> holds, reading only those
    /// layers' matrices (as float32). The file must cover every layer of the model for every configured target, with
    /// A [r, in] and B [out, r] matching the projections. With <paramref name="trainable"/> the matrices require
    /// gradients and the rest of the slice is frozen (continuing a LoRA run); otherwise nothing changes but the adapters
    /// (inference: generate, score). A tensor-parallel shard reads its parts of the matrices. Returns the adapter's config.
    /// </summary>
    public static LoraConfig LoadInto(LlamaSlice slice, string folder, bool trainable = false)
    {
        var (config, _) = ReadConfig(folder);
        using var file = OpenWeights(folder);
        var byCanonical = ParseNames(file, config).ToDictionary(n => n.Canonical.Name, n => n.PeftName, StringComparer.Ordinal);
        CheckCoversModel(byCanonical.Keys, config, slice.Config.NumHiddenLayers, file.Location);

        foreach (var (_, projection) in LoraInjector.Targets(slice, config))
        {
            var aName = byCanonical[projection.ModulePath + ".lora_A.weight"];
            var bName = byCanonical[projection.ModulePath + ".lora_B.weight"];
            var aShape = file.Describe(aName).Shape;
            var bShape = file.Describe(bName).Shape;
            long inFeatures = projection.FullInFeatures, outFeatures = projection.FullOutFeatures;
            if (!aShape.SequenceEqual([config.Rank, inFeatures]) || !bShape.SequenceEqual([outFeatures, config.Rank]))
                throw new PeftAdapterException(
                    $"{file.Location}: '{aName}' is [{string.Join(", ", aShape)}] and '{bName}' is [{string.Join(", ", bShape)}]; the model's {projection.ModulePath} [{outFeatures}, {inFeatures}] with r = {config.Rank} needs [{config.Rank}, {inFeatures}] and [{outFeatures}, {config.Rank}]");
            // A tensor-parallel shard reads only its parts: A's columns of a row-parallel projection, B's rows of a
            // column-parallel one.
            projection.AttachLora(file.Load(aName, ScalarType.Float32, projection.LoraASlice),
                file.Load(bName, ScalarType.Float32, projection.LoraBSlice), config.Scaling, config.Dropout, trainable);
        }
        if (trainable) LoraInjector.FreezeBase(slice);
        return config;
    }

    /// <summary>A canonical LoRA parameter name taken apart.</summary>
    public readonly record struct LoraParameterName(string Name, int Layer, string Target, char Matrix)
    {
        /// <summary>"model.layers.{Layer}.self_attn.q_proj" etc.</summary>
        public string ModulePath => $"model.layers.{Layer}.{LoraConfig.ModuleInLayer(Target)}";
    }

    /// <summary>Parses "model.layers.{i}.{self_attn|mlp}.{target}.lora_{A|B}.weight"; null for anything else.</summary>
    public static LoraParameterName? ParseCanonicalName(string name)
    {
        var match = CanonicalName().Match(name);
        if (!match.Success) return null;
        var target = match.Groups["target"].Value;
        if (LoraConfig.ModuleInLayer(target) != $"{match.Groups["block"].Value}.{target}") return null;
        if (!int.TryParse(match.Groups["layer"].Value, out var layer)) return null;
        return new LoraParameterName(name, layer, target, match.Groups["matrix"].Value[0]);
    }

    [GeneratedRegex(@"^model\.layers\.(?<layer>0|[1-9][0-9]*)\.(?<block>self_attn|mlp)\.(?<target>[a-z]+_proj)\.lora_(?<matrix>[AB])\.weight$")]
    private static partial Regex CanonicalName();

    static SafeTensorsFile OpenWeights(string folder)
    {
        var path = Path.Combine(Path.GetFullPath(folder), WeightsFileName);
        if (!File.Exists(path))
        {
            var hint = File.Exists(Path.Combine(folder, "adapter_model.bin"))
                ? " (adapter_model.bin is a pickle; save the adapter with safe_serialization=True)"
                : "";
            throw new PeftAdapterException($"{path}: not found (a PEFT adapter folder needs it){hint}");
        }
        return new SafeTensorsFile(path);
    }

    /// <summary>Every tensor of the file as (PEFT name, canonical name), refusing anything that is not a configured LoRA matrix.</summary>
    static List<(string PeftName, LoraParameterName Canonical)> ParseNames(SafeTensorsFile file, LoraConfig config)
    {
        var result = new List<(string, LoraParameterName)>();
        foreach (var peftName in file.Names)
        {
            var parsed = peftName.StartsWith(PeftPrefix, StringComparison.Ordinal)
                ? ParseCanonicalName(peftName[PeftPrefix.Length..])
                : null;
            if (parsed is not { } canonical)
                throw new PeftAdapterException(
                    $"{file.Location}: tensor '{peftName}' is not a LoRA matrix of a Llama projection (expected names like '{PeftPrefix}model.layers.0.self_attn.q_proj.lora_A.weight'; embeddings, modules_to_save, DoRA magnitudes and biases are not supported)");
            if (!config.Targets.Contains(canonical.Target))
                throw new PeftAdapterException(
                    $"{file.Location}: tensor '{peftName}' adapts {canonical.Target}, which adapter_config.json's target_modules ({string.Join(", ", config.Targets)}) does not list");
            var dtype = file.Describe(peftName).DType;
            if (dtype is not ("F32" or "BF16" or "F16"))
                throw new PeftAdapterException($"{file.Location}: tensor '{peftName}' is {dtype}; LoRA matrices are floating point");
            result.Add((peftName, canonical));
        }
        return result;
    }

    /// <summary>Null when the matrix has rank r, else what is wrong.</summary>
    static string? RankError(LoraParameterName name, long[] shape, LoraConfig config)
    {
        var rank = shape.Length != 2 ? -1 : name.Matrix == 'A' ? shape[0] : shape[1];
        return rank == config.Rank
            ? null
            : $"tensor '{ToPeftName(name.Name)}' is [{string.Join(", ", shape)}]; with r = {config.Rank} lora_{name.Matrix} must be {(name.Matrix == 'A' ? $"[{config.Rank}, in]" : $"[out, {config.Rank}]")}";
    }

    /// <summary>Every layer of the model has A and B for every target, and nothing names a layer the model lacks.</summary>
    internal static void CheckCoversModel(IEnumerable<string> canonicalNames, LoraConfig config, int layers, string location)
    {
        var present = canonicalNames.ToHashSet(StringComparer.Ordinal);
        var beyond = present.Select(n => ParseCanonicalName(n)!.Value).Where(n => n.Layer >= layers).Select(n => n.Name).ToList();
        if (beyond.Count > 0)
            throw new PeftAdapterException(
                $"{location}: the model has {layers} layers but the adapter has tensors for more: {string.Join(", ", beyond.Take(4).Select(ToPeftName))}");
        var missing = (from layer in Enumerable.Range(0, layers)
                       from path in config.ModulePaths(layer)
                       from matrix in new[] { ".lora_A.weight", ".lora_B.weight" }
                       let name = path + matrix
                       where !present.Contains(name)
                       select ToPeftName(name)).ToList();
        if (missing.Count > 0)
            throw new PeftAdapterException(
                $"{location}: {missing.Count} LoRA tensor(s) missing for target_modules {string.Join(", ", config.Targets)}: {string.Join(", ", missing.Take(6))}{(missing.Count > 6 ? ", ..." : "")}");
    }

    /// <summary>What Save is given: configured targets' matrices under canonical names, float32, rank r, in complete pairs.</summary>
    static void CheckSaved(List<(string Name, Tensor Tensor)> tensors, LoraConfig config, string folder)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            if (ParseCanonicalName(name) is not { } parsed)
                throw new ArgumentException($"{folder}: '{name}' is not a canonical LoRA parameter name (model.layers.{{i}}.self_attn.q_proj.lora_A.weight, ...)");
            if (!config.Targets.Contains(parsed.Target))
                throw new ArgumentException($"{folder}: '{name}' adapts {parsed.Target}, which the config's targets ({string.Join(", ", config.Targets)}) do not list");
            if (t.dtype != ScalarType.Float32)
                throw new ArgumentException($"{folder}: '{name}' is {t.dtype}; PEFT adapters are saved in float32");
            if (RankError(parsed, t.shape, config) is { } error) throw new ArgumentException($"{folder}: {error}");
            if (!names.Add(name)) throw new ArgumentException($"{folder}: '{name}' is given twice");
        }
        foreach (var name in names)
        {
            var partner = name.EndsWith(".lora_A.weight", StringComparison.Ordinal)
                ? name[..^".lora_A.weight".Length] + ".lora_B.weight"
                : name[..^".lora_B.weight".Length] + ".lora_A.weight";
            if (!names.Contains(partner)) throw new ArgumentException($"{folder}: '{name}' is given without '{partner}'");
        }
        if (names.Count == 0) throw new ArgumentException($"{folder}: no adapter tensors to save");
    }
}
