namespace Runtime.Cluster.Hosting;

/// <summary>What a node has to offer workers; injectable so tests (and odd machines) can say what the OS cannot.</summary>
public interface ISlotProbe
{
    /// <summary>GPUs this process may use.</summary>
    int GpuCount();

    /// <summary>CPU cores this process may use.</summary>
    int CpuCores();
}

/// <summary>
/// Counts NVIDIA GPUs without starting CUDA or a process: <c>CUDA_VISIBLE_DEVICES</c> when set (as CUDA itself
/// would), else the entries under /proc/driver/nvidia/gpus (one per GPU the driver sees). No driver: no GPUs.
/// </summary>
public sealed class SystemSlotProbe(Func<string, string?>? environment = null, string nvidiaGpuFolder = "/proc/driver/nvidia/gpus") : ISlotProbe
{
    public static SystemSlotProbe Instance { get; } = new();

    public int GpuCount()
    {
        var visible = (environment ?? Environment.GetEnvironmentVariable)("CUDA_VISIBLE_DEVICES");
        if (visible is not null)
        {
            // CUDA stops at the first invalid entry; "" or "-1" hide every device.
            int count = 0;
            foreach (var entry in visible.Split(',', StringSplitOptions.TrimEntries))
            {
                if (entry.Length == 0 || entry.StartsWith('-')) break;
                count++;
            }
            return count;
        }
        return Directory.Exists(nvidiaGpuFolder) ? Directory.GetDirectories(nvidiaGpuFolder).Length : 0;
    }

    public int CpuCores() => Environment.ProcessorCount;
}

/// <summary>A probe that reports fixed numbers.</summary>
public sealed class FixedSlotProbe(int gpus, int cpuCores) : ISlotProbe
{
    public int GpuCount() => gpus;
    public int CpuCores() => cpuCores;
}
