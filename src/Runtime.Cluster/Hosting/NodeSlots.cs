using Akka.Cluster;

namespace Runtime.Cluster.Hosting;

public enum SlotKind { Cpu, Gpu }

/// <summary>
/// The worker slots a node advertises, as cluster roles every member can read: <c>slots:N</c> and
/// <c>slot-kind:gpu|cpu</c>. A node without the worker role advertises none (slots:0).
/// </summary>
public sealed record NodeSlots(int Count, SlotKind Kind)
{
    public const string SlotsPrefix = "slots:";
    public const string KindPrefix = "slot-kind:";

    public IReadOnlyList<string> Roles => [SlotsPrefix + Count, KindPrefix + (Kind == SlotKind.Gpu ? "gpu" : "cpu")];

    public override string ToString() => $"{Count} {(Kind == SlotKind.Gpu ? "GPU" : "CPU")} slot{(Count == 1 ? "" : "s")}";

    /// <summary>
    /// Slots from the configured count (null: auto) and the probe: auto means one per GPU, or without GPUs
    /// max(1, cores / coresPerCpuSlot). An explicit count on a GPU node still names GPU slots.
    /// </summary>
    public static NodeSlots Resolve(int? configured, int coresPerCpuSlot, ISlotProbe probe)
    {
        int gpus = probe.GpuCount();
        var kind = gpus > 0 ? SlotKind.Gpu : SlotKind.Cpu;
        if (configured is { } n) return new NodeSlots(n, kind);
        return gpus > 0 ? new NodeSlots(gpus, kind) : new NodeSlots(Math.Max(1, probe.CpuCores() / coresPerCpuSlot), kind);
    }

    /// <summary>The slots a member advertises; a member without a slots role (not a Runtime node) has none.</summary>
    public static NodeSlots Of(Member member) => FromRoles(member.Roles);

    public static NodeSlots FromRoles(IEnumerable<string> roles)
    {
        int count = 0;
        var kind = SlotKind.Cpu;
        foreach (var role in roles)
        {
            if (role.StartsWith(SlotsPrefix, StringComparison.Ordinal) && int.TryParse(role.AsSpan(SlotsPrefix.Length), out int n) && n >= 0)
                count = n;
            else if (role == KindPrefix + "gpu")
                kind = SlotKind.Gpu;
        }
        return new NodeSlots(count, kind);
    }

    /// <summary>True for roles that only Runtime itself may set (from runtime.node.slots).</summary>
    public static bool IsSlotRole(string role) =>
        role.StartsWith(SlotsPrefix, StringComparison.Ordinal) || role.StartsWith(KindPrefix, StringComparison.Ordinal);
}
