using System.CommandLine;
using Runtime.Training.Checkpoints;
using Runtime.Training.Planning;
using static TorchSharp.torch;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt export`: a committed checkpoint as a PEFT adapter folder (LoRA, QLoRA) or a Hugging Face model folder (full
/// fine-tuning), whatever layout of workers wrote it (<see cref="CheckpointExport"/>). Exit 0 on success, 1 when the
/// checkpoint is temporary, incomplete, corrupt or not exportable, or the output folder is not new.
/// </summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "A committed checkpoint folder (checkpoint-<step>)", Required = true };
        var output = new Option<string>("--out") { Description = "The folder to write (absent or empty)", Required = true };

        var command = new Command("export", "Write a checkpoint as a PEFT adapter (LoRA, QLoRA) or a Hugging Face model folder (full fine-tuning)");
        command.Options.Add(checkpoint);
        command.Options.Add(output);
        CommandAction.Set(command, (parse, stdout) =>
        {
            var result = CheckpointExport.Export(parse.GetValue(checkpoint)!, parse.GetValue(output)!);
            var what = result.Method == FineTuneMethod.Full
                ? $"model ({result.Tensors} tensors, {(result.DType == ScalarType.BFloat16 ? "bf16" : result.DType == ScalarType.Float32 ? "fp32" : "fp16")})"
                : $"{CheckpointModelState.MethodName(result.Method)} adapter ({result.Tensors} tensors)";
            stdout.WriteLine($"exported step {result.Step} as a {what} -> {result.Output}");
            if (result.CopiedFiles.Count > 0) stdout.WriteLine($"copied {string.Join(", ", result.CopiedFiles)}");
            return CommandAction.ExitOk;
        });
        return command;
    }
}
