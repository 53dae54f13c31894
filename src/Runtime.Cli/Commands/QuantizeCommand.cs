using System.CommandLine;
using System.Globalization;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Model.Quantization;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt quantize`: writes a dense Llama folder as a bitsandbytes 4-bit (NF4, double-quantized) folder for QLoRA, as
/// transformers + bitsandbytes save one, and reports the measured bytes per quantized parameter (about 0.516).
/// Exit 0 on success, 1 on bad input.
/// </summary>
public static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The dense model folder (config.json + safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "The folder to write the 4-bit model to", Required = true };

        var command = new Command("quantize", "Quantize a model's projections to NF4 (bitsandbytes layout, double quantization) for QLoRA");
        command.Options.Add(model);
        command.Options.Add(output);

        CommandAction.Set(command, (parse, stdout) =>
        {
            var result = Nf4ModelQuantizer.QuantizeFolder(parse.GetValue(model)!, parse.GetValue(output)!);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"quantized {result.QuantizedWeights} weights ({result.QuantizedParameters} parameters) to NF4; kept {result.DenseTensors} tensors in bf16 -> {result.Output}"));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"bytes per quantized parameter: {result.BytesPerQuantizedParameter:F4} ({result.QuantizedBytes} bytes written for them)"));
            if (result.CopiedFiles.Count > 0) stdout.WriteLine($"copied {string.Join(", ", result.CopiedFiles)}");
            return CommandAction.ExitOk;
        });
        return command;
    }
}
