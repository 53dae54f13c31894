using Runtime.Cluster.Configuration;
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
        var slots = NodeSlots.Resolve(configured, coresPerSlot, new FixedSlotProbe(gpus, cores, gpuModel: "NVIDIA H100 80GB HBM3"));
        Assert.Equal((count, kind), (slots.Count, slots.Kind));
    }

    const long GiB = 1L << 30;

    [Theory]
    [InlineData(4, 0, null, null, null, 4 * GiB)]                              // a CPU node: 16 GiB / 4 slots
    [InlineData(3, 0, null, null, null, 16 * GiB / 3)]                         // rounded down
    [InlineData(4, 0, 6 * GiB, null, null, 6 * GiB)]                           // runtime.node.slot-memory
    [InlineData(8, 8, null, null, "NVIDIA H100 80GB HBM3", 85_017_493_504)]    // the model the driver reports, from the catalogue
    [InlineData(8, 8, null, null, "NVIDIA H200", 150_109_880_320)]            // a shorter name the product starts with
    [InlineData(8, 8, null, "b200", "NVIDIA H200", 182_631L << 20)]           // runtime.node.gpu wins over the driver
    [InlineData(2, 8, 20 * GiB, "b200", null, 20 * GiB)]                      // runtime.node.slot-memory wins over both
    [InlineData(0, 0, null, null, null, 0)]                                    // no slots, nothing to size
    public void Slot_memory_is_a_gpu_or_a_share_of_the_machine(int slots, int gpus, long? bytes, string? gpu, string? model, long expected)
    {
        var probe = new FixedSlotProbe(gpus, 16, memoryBytes: 16 * GiB, gpuModel: model);
        Assert.Equal(expected, NodeSlots.Resolve(slots, 1, probe, new SlotMemorySettings(bytes, gpu)).MemoryBytes);
    }

    [Theory]
    [InlineData(null, "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090 is not in the GPU catalogue")]
    [InlineData(null, "NVIDIA H100", "NVIDIA H100 is not in the GPU catalogue")] // 80GB or NVL: ambiguous
    [InlineData(null, null, "the driver names none")]
    [InlineData("h100", "NVIDIA H100 80GB HBM3", "unknown GPU 'h100'")]
    public void A_gpu_node_of_unknown_memory_refuses_to_start_naming_the_keys(string? gpu, string? model, string why)
    {
        var e = Assert.Throws<HoconException>(() =>
            NodeSlots.Resolve(null, 1, new FixedSlotProbe(2, 16, gpuModel: model), new SlotMemorySettings(null, gpu)));
        Assert.Contains(why, e.Message);
        Assert.StartsWith(SlotMemorySettings.GpuKey, e.Message);
        if (gpu is null) Assert.Contains(SlotMemorySettings.BytesKey, e.Message);
    }

    [Fact]
    public void Roles_round_trip()
    {
        var slots = new NodeSlots(8, SlotKind.Gpu, 85_017_493_504);
        Assert.Equal(["slots:8", "slot-kind:gpu", "slot-memory:85017493504"], slots.Roles);
        Assert.Equal(slots, NodeSlots.FromRoles(["worker", .. slots.Roles, "coordinator"]));
        Assert.Equal(new NodeSlots(0, SlotKind.Cpu), NodeSlots.FromRoles(["worker"])); // not a Runtime node: nothing to offer
        // A member of a build that did not advertise memory: slots of unknown memory (the memory plan is not checked there).
        Assert.Equal(new NodeSlots(2, SlotKind.Cpu, 0), NodeSlots.FromRoles(["slots:2", "slot-kind:cpu"]));
        Assert.True(NodeSlots.IsSlotRole("slot-memory:1"));
    }

    [Fact]
    public void The_driver_folder_names_the_gpu_models()
    {
        using var dir = new TempDir();
        foreach (var (bus, model) in new[] { ("0000:18:00.0", "NVIDIA H100 80GB HBM3"), ("0000:2a:00.0", "NVIDIA H200") })
        {
            Directory.CreateDirectory(Path.Combine(dir.Path, bus));
            File.WriteAllText(Path.Combine(dir.Path, bus, "information"), $"Model: \t\t {model}\nIRQ:   \t\t 123\nGPU UUID: \t GPU-1\n");
        }
        var probe = new SystemSlotProbe(_ => null, dir.Path);
        Assert.Equal(["NVIDIA H100 80GB HBM3", "NVIDIA H200"], probe.GpuModels());
        // Mixed models: a slot is as large as the smallest GPU.
        Assert.Equal(85_017_493_504, NodeSlots.Resolve(null, 1, probe).MemoryBytes);
        Assert.True(SystemSlotProbe.Instance.MemoryBytes() > 0);
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
