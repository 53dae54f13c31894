using System.CommandLine;
using System.Diagnostics;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Tokenization;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt init`: writes a randomly initialised Llama-architecture model as a Hugging Face folder (config.json,
/// generation_config.json, model.safetensors or shards, and the tokenizer files when given). Weights are drawn from
/// (seed, tensor name) and written one tensor at a time, so even a large preset never sits in memory twice.
/// </summary>
public static class InitCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = $"Architecture: tiny (tests, seconds), small (~174M, benchmarks), or a published one ({string.Join(", ", LlamaPresets.ByName.Keys.Skip(2))})",
            Required = true,
        };
        preset.AcceptOnlyFromAmong(LlamaPresets.ByName.Keys.ToArray());
        var output = new Option<string>("--out") { Description = "Folder to create (must be absent or empty)", Required = true };
        var seed = new Option<long>("--seed") { Description = "Initialisation seed", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "fp32 | bf16: dtype of the stored weights", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json (or a folder / tiktoken tokenizer.model) to copy into the model" };
        var initStd = new Option<double>("--init-std")
        {
            Description = "Standard deviation of the embedding and projection weights (transformers' initializer_range, 0.02)",
            DefaultValueFactory = _ => LlamaInitializer.DefaultStd,
        };

        var command = new Command("init", "Write a randomly initialised Llama model in Hugging Face format");
        foreach (var o in new Option[] { preset, output, seed, dtype, tokenizer, initStd }) command.Options.Add(o);
        CommandAction.Set(command, (parse, stdout) =>
        {
            var folder = parse.GetValue(output)!;
            var scalarType = ModelFolder.ParseDType(parse.GetValue(dtype)!);
            var config = LlamaPresets.Get(parse.GetValue(preset)!) with
            {
                TorchDtype = scalarType == TorchSharp.torch.ScalarType.BFloat16 ? "bfloat16" : "float32",
            };
            if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
                throw new UsageException($"--out {folder} exists and is not empty");

            var clock = Stopwatch.StartNew();
            // Check the tokenizer before writing weights, so a bad path costs nothing.
            var tokenizerPath = parse.GetValue(tokenizer);
            if (tokenizerPath is not null) Llama3Tokenizer.Load(tokenizerPath);

            var std = parse.GetValue(initStd);
            if (!(std > 0) || double.IsInfinity(std)) throw new UsageException($"--init-std must be a positive number (got {std})");

            Directory.CreateDirectory(folder);
            var init = new LlamaInitializer(parse.GetValue(seed), std);
            var entries = LlamaTensorNames.All(config)
                .Select(t => new TensorEntry(t.Name, scalarType, t.Shape, () => init.Create(t.Name, t.Shape, scalarType)))
                .ToList();
            var layout = HfModelWriter.Write(folder, entries);
            AtomicFile.Write(Path.Combine(folder, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(config.ToJson())));
            AtomicFile.Write(Path.Combine(folder, "generation_config.json"),
                s => s.Write(System.Text.Encoding.UTF8.GetBytes(GenerationConfigJson(config))));
            if (tokenizerPath is not null) Llama3Tokenizer.CopyFiles(tokenizerPath, folder);

            stdout.WriteLine($"wrote {folder}: {config.ParameterCount:N0} parameters, {layout.TotalSize / 1e6:F1} MB in " +
                             $"{layout.Shards.Count} file(s), {parse.GetValue(dtype)}, seed {parse.GetValue(seed)}, " +
                             $"{clock.Elapsed.TotalSeconds:F1} s{(tokenizerPath is null ? "" : ", with tokenizer")}");
            return CommandAction.ExitOk;
        });
        return command;
    }

    /// <summary>What transformers writes next to a Llama 3.x Instruct model, so `generate` tools stop on the same ids.</summary>
    static string GenerationConfigJson(LlamaConfig config) =>
        new System.Text.Json.Nodes.JsonObject
        {
            ["bos_token_id"] = config.BosTokenId,
            ["do_sample"] = true,
            ["eos_token_id"] = new System.Text.Json.Nodes.JsonArray(config.EosTokenIds.Select(e => (System.Text.Json.Nodes.JsonNode)e).ToArray()),
            ["temperature"] = 0.6,
            ["top_p"] = 0.9,
        }.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
}
