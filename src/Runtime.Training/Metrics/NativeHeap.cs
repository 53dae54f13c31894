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

    /// <summary>hblkhd: the bytes of blocks that have a mapping of their own (see <see cref="KeepFreedMemory"/>), or -1.</summary>
    public static long OwnMappingBytes() => IsAvailable ? checked((long)MallInfo2Native().HBlkHd) : -1;

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int parameter, int value);

    const int TrimThreshold = -1, MmapMax = -4; // glibc's M_TRIM_THRESHOLD, M_MMAP_MAX

    /// <summary>
    /// Makes glibc keep freed memory for the next tensors instead of giving it back to the kernel. By default every
    /// block over 32 MB (a logits tensor of 256 tokens x 128k vocabulary is 131 MB) gets its own mmap and munmap, and
    /// the pages of each new one are faulted in and zeroed again: on the CPU engine that was 40% of a training step's
    /// time, spent in the kernel. With mmap off and trimming above 2 GB, blocks come from the arenas and their pages
    /// stay mapped; the process keeps its high-water mark, as PyTorch's caching allocators do on GPUs. Call it
    /// before the first tensor; a no-op where glibc is absent, or where the environment says <c>RT_MALLOC=default</c>
    /// (glibc's own behaviour, for comparison). Returns whether both settings took.
    /// </summary>
    public static bool KeepFreedMemory()
    {
        if (!IsAvailable || Environment.GetEnvironmentVariable("RT_MALLOC") == "default") return false;
        return MallOpt(MmapMax, 0) == 1 & MallOpt(TrimThreshold, int.MaxValue) == 1;
    }

    /// <summary>uordblks + hblkhd now, or -1 when <c>mallinfo2</c> is not available.</summary>
    public static long BytesInUse()
    {
        if (!IsAvailable) return -1;
        var info = MallInfo2Native();
        return checked((long)(info.UordBlks + info.HBlkHd));
    }
}
