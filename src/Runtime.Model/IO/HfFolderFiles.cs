using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.Config;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// The non-tensor files of a Hugging Face model folder that tools deriving one folder from another (merge, quantize)
/// carry over: config.json (edited) and the tokenizer and generation files (copied as they are).
/// </summary>
public static class HfFolderFiles
{
    public const string ConfigFileName = "config.json";

    /// <summary>Files copied when present, relative to the folder.</summary>
    public static IReadOnlyList<string> CompanionFiles { get; } =
    [
        "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "tokenizer.model", Path.Combine("original", "tokenizer.model"), "chat_template.jinja",
    ];

    /// <summary>Copies the companion files <paramref name="from"/> has into <paramref name="to"/>; returns the ones copied.</summary>
    public static IReadOnlyList<string> CopyCompanions(string from, string to)
    {
        var copied = new List<string>();
        foreach (var relative in CompanionFiles)
        {
            var source = Path.Combine(from, relative);
            if (!File.Exists(source)) continue;
            var target = Path.Combine(to, relative);
            AtomicFile.Write(target, stream =>
            {
                using var input = File.OpenRead(source);
                input.CopyTo(stream);
            });
            copied.Add(relative);
        }
        return copied;
    }

    /// <summary>
    /// Reads <paramref name="from"/>/config.json as JSON (every key kept, numbers as written), lets
    /// <paramref name="edit"/> change it, and writes it to <paramref name="to"/>/config.json with indent 2 and a final
    /// newline, as transformers does.
    /// </summary>
    public static void RewriteConfig(string from, string to, Action<JsonObject> edit)
    {
        var path = Path.Combine(from, ConfigFileName);
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: not found (a Hugging Face model folder needs config.json)");
        JsonObject config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelConfigException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}");
        }
        edit(config);
        var text = config.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }) + "\n";
        AtomicFile.Write(Path.Combine(to, ConfigFileName), s => s.Write(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>
    /// Sets the weights' dtype in a config: transformers v5 writes "dtype", earlier versions "torch_dtype"; whichever
    /// keys are there are updated ("torch_dtype" is added when neither is).
    /// </summary>
    public static void SetDType(JsonObject config, ScalarType dtype)
    {
        var name = dtype switch
        {
            ScalarType.BFloat16 => "bfloat16",
            ScalarType.Float32 => "float32",
            ScalarType.Float16 => "float16",
            _ => throw new ArgumentException($"a model folder's dtype is bfloat16, float16 or float32, not {dtype}"),
        };
        var keys = new[] { "dtype", "torch_dtype" }.Where(config.ContainsKey).ToList();
        if (keys.Count == 0) keys.Add("torch_dtype");
        foreach (var key in keys) config[key] = name;
    }

    /// <summary>Refuses an output folder that is one of the inputs (its files are being read while written).</summary>
    public static void CheckDistinct(string output, params string[] inputs)
    {
        var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(output));
        foreach (var input in inputs)
            if (string.Equals(target, Path.TrimEndingDirectorySeparator(Path.GetFullPath(input)), StringComparison.Ordinal))
                throw new ArgumentException($"the output folder {target} is also an input; write to a new folder");
    }
}
