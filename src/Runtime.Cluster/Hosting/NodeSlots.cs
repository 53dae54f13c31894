using System.Globalization;
using Akka.Cluster;
using Runtime.Cluster.Configuration;
using Runtime.Training.Planning;

namespace Runtime.Cluster.Hosting;

public enum SlotKind { Cpu, Gpu }

/// <summary>
/// The worker slots a node advertises, as cluster roles every member can read: <c>slots:N</c>,
/// <c>slot-kind:gpu|cpu</c> and <c>slot-memory:BYTES</c> (what one slot offers a worker; what a run's memory plan is
/// admitted against). A node without the worker role advertises none (slots:0).
/// </summary>
/// <param name="MemoryBytes">Memory of one slot: a GPU's, or a CPU slot's share of the machine's; 0 when unknown
/// (a member that does not advertise it).</param>
public sealed record NodeSlots(int Count, SlotKind Kind, long MemoryBytes = 0)
{
    public const string SlotsPrefix = "slots:";
    public const string KindPrefix = "slot-kind:";
    public const string MemoryPrefix = "slot-memory:";

    public IReadOnlyList<string> Roles => MemoryBytes > 0
        ? [SlotsPrefix + Count, KindPrefix + KindName, MemoryPrefix + MemoryBytes.ToString(CultureInfo.InvariantCulture)]
        : [SlotsPrefix + Count, KindPrefix + KindName];

    string KindName => Kind == SlotKind.Gpu ? "gpu" : "cpu";

    public override string ToString() =>
        $"{Count} {(Kind == SlotKind.Gpu ? "GPU" : "CPU")} slot{(Count == 1 ? "" : "s")}" +
        (MemoryBytes > 0 && Count > 0 ? $" of {ByteText.Format(MemoryBytes)}" : "");

    /// <summary>
    /// Slots from the configured count (null: auto) and the probe: auto means one per GPU, or without GPUs
    /// max(1, cores / coresPerCpuSlot). An explicit count on a GPU node still names GPU slots. Each slot's memory is
    /// <see cref="SlotMemorySettings.Bytes"/> when set; otherwise a GPU's (<see cref="SlotMemorySettings.Gpu"/>, or the
    /// catalogue entry of the model the driver reports) or, on a CPU node, the machine's memory shared by the slots.
    /// </summary>
    public static NodeSlots Resolve(int? configured, int coresPerCpuSlot, ISlotProbe probe, SlotMemorySettings? memory = null)
    {
        int gpus = probe.GpuCount();
        var kind = gpus > 0 ? SlotKind.Gpu : SlotKind.Cpu;
        int count = configured ?? (gpus > 0 ? gpus : Math.Max(1, probe.CpuCores() / coresPerCpuSlot));
        return new NodeSlots(count, kind, count == 0 ? 0 : SlotMemory(kind, count, probe, memory ?? SlotMemorySettings.Auto));
    }

    static long SlotMemory(SlotKind kind, int count, ISlotProbe probe, SlotMemorySettings settings)
    {
        if (settings.Bytes is { } bytes) return bytes;
        if (kind == SlotKind.Cpu) return Math.Max(1, probe.MemoryBytes() / count);
        if (settings.Gpu is { } name)
        {
            try
            {
                return GpuCatalog.Get(name).CapacityBytes;
            }
            catch (PlanningException e)
            {
                throw new HoconException($"{SlotMemorySettings.GpuKey}: {e.Message}");
            }
        }
        var models = probe.GpuModels();
        var known = models.Select(GpuCatalog.FindByProduct).ToList();
        if (models.Count == 0 || known.Any(g => g is null))
            throw new HoconException(
                $"{SlotMemorySettings.GpuKey} = auto: the memory of this node's GPUs is unknown " +
                $"({(models.Count == 0 ? "the driver names none" : string.Join(", ", models.Distinct()) + " is not in the GPU catalogue")}); " +
                $"set {SlotMemorySettings.GpuKey} to one of {string.Join(", ", GpuCatalog.ByName.Keys)}, " +
                $"or {SlotMemorySettings.BytesKey} to one GPU's memory (such as 80GiB)");
        return known.Min(g => g!.CapacityBytes);
    }

    /// <summary>The slots a member advertises; a member without a slots role (not a Runtime node) has none.</summary>
    public static NodeSlots Of(Member member) => FromRoles(member.Roles);

    public static NodeSlots FromRoles(IEnumerable<string> roles)
    {
        int count = 0;
        long memory = 0;
        var kind = SlotKind.Cpu;
        foreach (var role in roles)
        {
            if (role.StartsWith(SlotsPrefix, StringComparison.Ordinal) && int.TryParse(role.AsSpan(SlotsPrefix.Length), out int n) && n >= 0)
                count = n;
            else if (role == KindPrefix + "gpu")
                kind = SlotKind.Gpu;
            else if (role.StartsWith(MemoryPrefix, StringComparison.Ordinal) &&
                     long.TryParse(role.AsSpan(MemoryPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long bytes))
                memory = bytes;
        }
        return new NodeSlots(count, kind, memory);
    }

    /// <summary>True for roles that only Runtime itself may set (from runtime.node.slots).</summary>
    public static bool IsSlotRole(string role) =>
        role.StartsWith(SlotsPrefix, StringComparison.Ordinal) || role.StartsWith(KindPrefix, StringComparison.Ordinal) ||
        role.StartsWith(MemoryPrefix, StringComparison.Ordinal);
}
