using System.Runtime.InteropServices;

namespace Runtime.Training.Metrics;

/// <summary>
/// Bytes the C allocator has handed out and not yet taken back, from glibc's <c>mallinfo2()</c>: <c>uordblks</c>
/// (in use inside the arenas, every thread's arena summed) + <c>hblkhd</c> (large blocks served by their own mmap).
/// libtorch's CPU allocator takes every tensor's storage from the system malloc (<c>posix_memalign</c>, no caching),
/// so the difference of two readings is what tensors were created or freed in between, plus malloc's per-chunk
/// headers (16 bytes) and any small native bookkeeping. The .NET heap is not included (the GC maps its own memory).
/// Where glibc is absent (musl, macOS, Windows) or older than 2.33, <see cref="IsAvailable"/> is false.
/// </summary>
public static partial class NativeHeap
{
    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 MallInfo2Native();

    static readonly Lazy<bool> Available = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            MallInfo2Native();
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    });

    public static bool IsAvailable => Available.Value;

    /// <summary>uordblks + hblkhd now, or -1 when <c>mallinfo2</c> is not available.</summary>
    public static long BytesInUse()
    {
        if (!IsAvailable) return -1;
        var info = MallInfo2Native();
        return checked((long)(info.UordBlks + info.HBlkHd));
    }
}
