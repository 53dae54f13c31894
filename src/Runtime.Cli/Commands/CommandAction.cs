using System.CommandLine;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Model.Tokenization;
using Runtime.Training.Data;

namespace Runtime.Cli.Commands;

/// <summary>
/// Runs a command body and turns the failures a user can cause (bad files, bad flags, bad data) into one
/// "error: ..." line on stderr and exit code 1. Anything else is a bug and keeps its stack trace.
/// </summary>
public static class CommandAction
{
    public const int ExitOk = 0;
    public const int ExitError = 1;

    public static void Set(Command command, Func<ParseResult, TextWriter, int> body) =>
        command.SetAction(parse =>
        {
            var error = parse.InvocationConfiguration.Error;
            try
            {
                return body(parse, parse.InvocationConfiguration.Output);
            }
            catch (Exception e) when (IsUserError(e))
            {
                error.WriteLine($"error: {e.Message}");
                return ExitError;
            }
        });

    public static bool IsUserError(Exception e) => e is UsageException or ModelConfigException or TensorFileException
        or TokenizerFormatException or DataFormatException or PeftAdapterException or IOException or UnauthorizedAccessException
        or InvalidDataException or Runtime.Training.Checkpoints.CheckpointException or Cluster.RunSpecs.RunSpecException
        or Cluster.Configuration.HoconException;
}

/// <summary>A flag combination or argument the command cannot act on; the message says which.</summary>
public sealed class UsageException(string message) : Exception(message);
