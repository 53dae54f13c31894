namespace Runtime.Training.Planning;

/// <summary>
/// A GPU as a program sees it: <see cref="CapacityBytes"/> is the total CUDA reports (cudaMemGetInfo, the
/// total_memory in torch.cuda.get_device_properties), which is nvidia-smi's memory.total less what the driver keeps
/// for itself (memory.reserved), and less again than the marketing figure.
/// </summary>
public sealed record GpuSpec(string Name, string Product, long CapacityBytes, int GpusPerNode, string Source);

public static class GpuCatalog
{
    const long MiB = 1L << 20;

    public static IReadOnlyDictionary<string, GpuSpec> ByName { get; } = new Dictionary<string, GpuSpec>
    {
        // PyTorch's OOM message on an A100-SXM4-80GB reads "79.15 GiB total capacity" (nvidia-smi: 81920 MiB).
        ["a100-80"] = new("a100-80", "NVIDIA A100-SXM4-80GB", 81_050 * MiB, 8,
            "torch OOM reports '79.15 GiB total capacity'; nvidia-smi 81920 MiB"),
        // Measured for this planner: torch 2.11 on an H100 80GB HBM3 reports total_memory 85,017,493,504 bytes
        // (81,079 MiB = 79.18 GiB); nvidia-smi's memory.total is 81,559 MiB, 480 MiB of which the driver reserves.
        ["h100-80"] = new("h100-80", "NVIDIA H100 80GB HBM3", 85_017_493_504, 8,
            "measured: cudaMemGetInfo total on H100 80GB HBM3 (nvidia-smi 81559 MiB)"),
        // H100 NVL: nvidia-smi 95,830 MiB; a total_memory of 99,456,909,312 bytes (94,850 MiB) is reported for it.
        ["h100-94"] = new("h100-94", "NVIDIA H100 NVL 94GB", 99_456_909_312, 8,
            "reported torch total_memory for H100 NVL (nvidia-smi 95830 MiB)"),
        // Measured for this planner: torch 2.11 on an H200 reports 150,109,880,320 bytes (143,155 MiB = 139.8 GiB) =
        // nvidia-smi's 143,771 MiB less its memory.reserved of 616 MiB.
        ["h200"] = new("h200", "NVIDIA H200 141GB", 150_109_880_320, 8,
            "measured: cudaMemGetInfo total on H200 (nvidia-smi 143771 MiB, 616 MiB reserved)"),
        // B200 (192 GB HBM3e on the package): nvidia-smi shows 183,359 MiB; torch reports total_memory 182,631 to
        // 182,642 MiB on HGX/DGX B200 (about 178.4 GiB = 191.5 GB; NVIDIA's DGX B200 sheet says 1,440 GB for 8, i.e.
        // "180 GB" a GPU). The lower reported figure is used.
        ["b200"] = new("b200", "NVIDIA B200 192GB", 182_631 * MiB, 8,
            "reported torch total_memory 182631-182642 MiB on HGX B200 (nvidia-smi 183359 MiB)"),
    };

    /// <summary>
    /// The entry for a device name as the NVIDIA driver reports it (nvidia-smi's name, the "Model:" line under
    /// /proc/driver/nvidia/gpus): the product, or a shorter name the product starts with ("NVIDIA H200" for the H200
    /// 141GB), compared without case. Null when nothing matches, or when a short name matches two entries.
    /// </summary>
    public static GpuSpec? FindByProduct(string model)
    {
        var name = string.Join(' ', model.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (name.Length == 0) return null;
        var exact = ByName.Values.FirstOrDefault(g => string.Equals(g.Product, name, StringComparison.OrdinalIgnoreCase));
        if (exact is not null) return exact;
        var prefixed = ByName.Values.Where(g => g.Product.StartsWith(name + " ", StringComparison.OrdinalIgnoreCase)).ToList();
        return prefixed.Count == 1 ? prefixed[0] : null;
    }

    public static GpuSpec Get(string name) =>
        ByName.TryGetValue(name.Trim().ToLowerInvariant(), out var g)
            ? g
            : throw new PlanningException($"unknown GPU '{name}' (known: {string.Join(", ", ByName.Keys)})");
}
