using System.Runtime.InteropServices;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// fsync of a folder, which makes the creations and renames inside it durable on POSIX systems (a rename lives in the
/// folder's entries, not in the file). Best effort: Windows has no such call (NTFS journals renames) and some file
/// systems refuse it for folders; the file data itself is flushed by whoever wrote it.
/// </summary>
internal static partial class FolderSync
{
    public static void Sync(string folder)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        try
        {
            int fd = Open(folder, 0 /* O_RDONLY */);
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
