namespace Runtime.Cluster.Hosting;

/// <summary>What a node has to offer workers; injectable so tests (and odd machines) can say what the OS cannot.</summary>
public interface ISlotProbe
{
    /// <summary>GPUs this process may use.</summary>
    int GpuCount();

    /// <summary>CPU cores this process may use.</summary>
    int CpuCores();

    /// <summary>Memory this process may use: the machine's physical memory, or its container's limit when lower.</summary>
    long MemoryBytes();

    /// <summary>The model name of every GPU the driver lists ("NVIDIA H100 80GB HBM3"); empty without a driver.</summary>
    IReadOnlyList<string> GpuModels();
}

/// <summary>
/// Counts NVIDIA GPUs without starting CUDA or a process: <c>CUDA_VISIBLE_DEVICES</c> when set (as CUDA itself
/// would), else the entries under /proc/driver/nvidia/gpus (one per GPU the driver sees). No driver: no GPUs.
/// Their models come from the "Model:" line of each entry's information file (every GPU the driver sees, visible or
/// not: the smallest decides a slot's memory). Memory is what the .NET runtime sees as available to the process
/// (physical memory, or a cgroup limit).
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

    public long MemoryBytes() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    public IReadOnlyList<string> GpuModels()
    {
        if (!Directory.Exists(nvidiaGpuFolder)) return [];
        var models = new List<string>();
        foreach (var gpu in Directory.GetDirectories(nvidiaGpuFolder).Order(StringComparer.Ordinal))
        {
            var information = Path.Combine(gpu, "information");
            if (!File.Exists(information)) continue;
            foreach (var line in File.ReadLines(information))
                if (line.StartsWith("Model:", StringComparison.Ordinal))
                {
                    models.Add(line["Model:".Length..].Trim());
                    break;
                }
        }
        return models;
    }
}

/// <summary>A probe that reports fixed numbers (16 GiB of memory unless told; GPUs of the given model).</summary>
public sealed class FixedSlotProbe(int gpus, int cpuCores, long memoryBytes = 16L << 30, string? gpuModel = null) : ISlotProbe
{
    public int GpuCount() => gpus;
    public int CpuCores() => cpuCores;
    public long MemoryBytes() => memoryBytes;
    public IReadOnlyList<string> GpuModels() => gpuModel is null ? [] : Enumerable.Repeat(gpuModel, gpus).ToList();
}
