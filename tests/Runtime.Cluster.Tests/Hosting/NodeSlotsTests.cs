using Runtime.Cluster.Hosting;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Hosting;

public class NodeSlotsTests
{
    [Theory]
    [InlineData(null, 1, 0, 16, 16, SlotKind.Cpu)]  // auto on a CPU machine: a slot per core
    [InlineData(null, 4, 0, 16, 4, SlotKind.Cpu)]   // 4 cores per slot
    [InlineData(null, 4, 0, 2, 1, SlotKind.Cpu)]    // never fewer than one
    [InlineData(null, 1, 8, 224, 8, SlotKind.Gpu)]  // auto on a GPU node: a slot per GPU, whatever the cores
    [InlineData(3, 1, 0, 16, 3, SlotKind.Cpu)]      // explicit count
    [InlineData(2, 1, 8, 224, 2, SlotKind.Gpu)]     // explicit count on a GPU node: GPU slots
    [InlineData(0, 1, 0, 16, 0, SlotKind.Cpu)]      // a node that hosts no workers
    public void Slots_resolve_from_setting_and_probe(int? configured, int coresPerSlot, int gpus, int cores, int count, SlotKind kind)
    {
        Assert.Equal(new NodeSlots(count, kind), NodeSlots.Resolve(configured, coresPerSlot, new FixedSlotProbe(gpus, cores)));
    }

    [Fact]
    public void Roles_round_trip()
    {
        var slots = new NodeSlots(8, SlotKind.Gpu);
        Assert.Equal(["slots:8", "slot-kind:gpu"], slots.Roles);
        Assert.Equal(slots, NodeSlots.FromRoles(["worker", .. slots.Roles, "coordinator"]));
        Assert.Equal(new NodeSlots(0, SlotKind.Cpu), NodeSlots.FromRoles(["worker"])); // not a Runtime node: nothing to offer
    }

    [Theory]
    [InlineData("0,1,2,3", 4)]
    [InlineData("GPU-8f2a,GPU-77c1", 2)]
    [InlineData("", 0)]
    [InlineData("-1", 0)]
    [InlineData("0,-1,2", 1)] // CUDA stops at the first invalid entry
    public void Cuda_visible_devices_decides_the_gpu_count(string visible, int gpus)
    {
        var probe = new SystemSlotProbe(name => name == "CUDA_VISIBLE_DEVICES" ? visible : null, "/nonexistent");
        Assert.Equal(gpus, probe.GpuCount());
    }

    [Fact]
    public void Without_cuda_visible_devices_the_driver_folder_is_counted()
    {
        using var dir = new TempDir();
        foreach (var bus in new[] { "0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0" })
            Directory.CreateDirectory(Path.Combine(dir.Path, bus));
        Assert.Equal(3, new SystemSlotProbe(_ => null, dir.Path).GpuCount());
        Assert.Equal(0, new SystemSlotProbe(_ => null, dir["missing"]).GpuCount());
    }
}
