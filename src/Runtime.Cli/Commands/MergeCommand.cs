using System.CommandLine;
using System.Globalization;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Lora;
using static TorchSharp.torch;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt merge`: folds a PEFT LoRA adapter into its base model and writes a plain Hugging Face folder (dense base or an
/// `rt quantize` 4-bit one, which is dequantized and written in bf16). Exit 0 on success, 1 on bad input.
/// </summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The base model folder (config.json + safetensors; dense or 4-bit)", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "The PEFT adapter folder (adapter_config.json + adapter_model.safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "The folder to write the merged model to", Required = true };
        var dtype = new Option<string?>("--dtype") { Description = "bf16 | fp32 (default: fp32 for an fp32 base, else bf16)" };
        dtype.AcceptOnlyFromAmong("bf16", "fp32");

        var command = new Command("merge", "Merge a LoRA adapter into its base model: W' = W + (alpha/r) B A, written as a Hugging Face folder");
        foreach (var o in new Option[] { model, adapter, output, dtype })
            command.Options.Add(o);

        CommandAction.Set(command, (parse, stdout) =>
        {
            ScalarType? requested = parse.GetValue(dtype) switch
            {
                "bf16" => ScalarType.BFloat16,
                "fp32" => ScalarType.Float32,
                _ => null,
            };
            var result = LoraMerge.MergeFolder(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(output)!, requested);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"merged {result.MergedWeights} adapted weights into {result.Tensors} tensors ({(result.DType == ScalarType.Float32 ? "fp32" : "bf16")}{(result.FromQuantizedBase ? ", from a 4-bit base" : "")}) -> {result.Output}"));
            if (result.CopiedFiles.Count > 0) stdout.WriteLine($"copied {string.Join(", ", result.CopiedFiles)}");
            return CommandAction.ExitOk;
        });
        return command;
    }
}
