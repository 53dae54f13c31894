using System.Runtime.InteropServices;

namespace Runtime.Model.IO;

/// <summary>
/// Writes a file so that its final name only ever shows a complete file: the bytes go to a temporary file in the same
/// folder (same file system, so the rename is atomic), which is flushed to disk and then renamed over the target.
/// A crash or an exception at any moment leaves either the old file or the new one, never a mix, and never writes
/// into the old file in place (a reader that has it mapped keeps seeing the old bytes).
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Temporary files start with this, so folder scans can tell them from real outputs.</summary>
    public const string TemporaryPrefix = ".tmp-";

    public static void Write(string path, Action<FileStream> write)
    {
        var target = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(folder);
        var temporary = Path.Combine(folder, $"{TemporaryPrefix}{Guid.NewGuid():N}-{Path.GetFileName(target)}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None,
                       bufferSize: 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, target, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
        SyncFolder(folder);
    }

    static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the original exception is the one worth reporting.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// Makes the rename itself durable: on POSIX systems a rename lives in the folder, which has to be fsynced too.
    /// Best effort: some file systems refuse fsync on folders, and Windows has no such call (NTFS journals renames).
    /// </summary>
    public static void SyncFolder(string folder)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        try
        {
            var fd = Open(folder, 0 /* O_RDONLY */);
            if (fd < 0) return;
            Fsync(fd);
            Close(fd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
