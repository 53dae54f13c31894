namespace Runtime.Cli.Finetune;

/// <summary>
/// One `rt finetune` per output folder: two in-process nodes would share its SQLite journal and write the same
/// checkpoints. An exclusive lock on a file in the folder's .runtime (an advisory flock on Linux, taken by .NET for
/// FileShare.None), released when the process ends however it ends.
/// </summary>
public sealed class OutputLock : IDisposable
{
    const string FileName = "rt-finetune.lock";
    readonly FileStream _file;

    OutputLock(FileStream file) => _file = file;

    public static OutputLock Acquire(string stateFolder)
    {
        Directory.CreateDirectory(stateFolder);
        var path = Path.Combine(stateFolder, FileName);
        try
        {
            return new OutputLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException)
        {
            throw new Commands.UsageException($"another rt finetune is using {Path.GetDirectoryName(stateFolder)} (it holds {path})");
        }
    }

    public void Dispose() => _file.Dispose();
}
