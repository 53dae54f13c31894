using Akka.Actor;
using Akka.Event;

namespace Runtime.Cli.Finetune;

/// <summary>
/// An Akka logger that appends every log line to the file named by <see cref="PathKey"/> (`rt finetune` keeps the
/// node's log in the run's output, out of the terminal its progress line uses).
/// </summary>
public sealed class FileLogger : ReceiveActor
{
    public const string PathKey = "runtime.finetune.log-file";

    readonly StreamWriter _writer;

    public FileLogger()
    {
        var path = Context.System.Settings.Config.GetString(PathKey);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e => _writer.WriteLine(e.ToString()));
    }

    protected override void PostStop() => _writer.Dispose();
}
