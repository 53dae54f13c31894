using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;
using Xunit.Abstractions;

namespace Runtime.Cluster.Tests.RunSpecs;

/// <summary>
/// Admission by memory plan (<see cref="MemoryAdmission"/> through <see cref="RunSpecValidator"/>): the most loaded
/// worker's planned bytes within 90% of the smallest slot, or a refusal that shows the plan and names the key.
/// </summary>
public class MemoryAdmissionTests(ITestOutputHelper output) : IDisposable
{
    const long GiB = 1L << 30;
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The tiny preset (tied 128256 x 64 embedding, 4 layers), LoRA r 16 on every projection, bf16, 256 tokens a row.</summary>
    RunSpec Spec(params string[] sets) => SpecOf(LlamaPresets.Tiny, ["data.max-seq-length=256", "train.micro-batch-size=1", .. sets]);

    RunSpec SpecOf(LlamaConfig config, params string[] sets)
    {
        Fixtures.Model(_dir["model"], config);
        Fixtures.Data(_dir["data/train.jsonl"]);
        return RunSpecParser.Parse("run { name = \"t\", model = \"model\", data.path = \"data/train.jsonl\" }", "t.conf", _dir.Path, sets);
    }

    static ISlotInventory Cpu(long bytes, int slots = 4) => new FixedSlotInventory(new NodeSlots(slots, SlotKind.Cpu, bytes), "node-a");

    SpecProblem Refused(RunSpec spec, ISlotInventory slots)
    {
        var problem = Assert.Single(RunSpecValidator.Problems(spec, slots));
        output.WriteLine(problem.ToString());
        return problem;
    }

    [Fact]
    public void The_plan_in_a_refusal_is_the_tiny_models_bytes_by_category()
    {
        var p = Refused(Spec(), Cpu(100_000_000));
        // By hand: 8,405,568 parameters in bf16 (the tied table once) = 16.8 MB; LoRA r 16 on the 7 projections of 4
        // layers (A r x in, B out x r: q 2048, k 1536, v 1536, o 2048, gate/up/down 4096 each) = 77,824 fp32 parameters
        // = 311.3 kB, their gradients as much, AdamW's two moments twice that.
        Assert.Contains("weights 16.8 MB, trainable 311.3 kB, gradients 311.3 kB, optimizer 622.6 kB, activations ", p.Message);
        // 90% of the slot, and where it is.
        Assert.Contains("over the budget of 90.0 MB (90% of the smallest slot: 100.0 MB, a CPU slot of node-a)", p.Message);
        Assert.Contains("run.admission.force = on", p.Message);
    }

    [Fact]
    public void A_plan_within_90_percent_of_the_slot_is_admitted_and_a_byte_less_of_slot_refuses_it()
    {
        var spec = Spec();
        long total = RunMemoryPlan.For(spec, LlamaPresets.Tiny, SlotKind.Cpu, GiB).Peak.Memory.Total;
        // The smallest slot whose 90% (rounded down) holds the plan, found by plain arithmetic.
        long slot = (long)Math.Ceiling(total / 0.9);
        while (Math.Floor(0.9 * (slot - 1)) >= total) slot--;
        while (Math.Floor(0.9 * slot) < total) slot++;
        Assert.Empty(RunSpecValidator.Problems(spec, Cpu(slot)));
        var p = Refused(spec, Cpu(slot - 1));
        Assert.Contains($"needs {Runtime.Training.Planning.ByteText.Format(total)} (", p.Message);
    }

    [Theory]
    [InlineData("run.train.micro-batch-size", "train.micro-batch-size=2")]          // activations dominate: the batch first
    [InlineData("run.data.max-seq-length", "train.micro-batch-size=1")]             // one row: its length
    [InlineData("run.train.grad-checkpointing", "train.grad-checkpointing=off")]     // recompute off: turn it on first
    public void A_refusal_names_the_key_that_shrinks_what_dominates(string key, string set)
    {
        var p = Refused(Spec("data.max-seq-length=4096", set), Cpu(2 * GiB));
        Assert.Equal(key, p.Key);
        Assert.StartsWith(key + ": the run's memory plan does not fit a worker slot: each worker needs ", p.ToString());
        Assert.Contains("activations ", p.Message);
    }

    [Fact]
    public void A_plan_dominated_by_the_weights_and_optimizer_names_the_pipeline_and_the_stage()
    {
        // Full fine-tuning of Llama 3.1 8B in bf16: about 18 bytes a parameter, 144 GB, on 80 GB GPUs.
        var spec = SpecOf(LlamaPresets.Llama31_8B, "method=full", "data.max-seq-length=1024", "train.micro-batch-size=1", "parallel.pipeline=2");
        var p = Refused(spec, new FixedSlotInventory(new NodeSlots(8, SlotKind.Gpu, 85_017_493_504), "gpu-node"));
        Assert.Equal("run.parallel.pipeline", p.Key);
        Assert.Contains("a worker of stage ", p.Message);
        Assert.Contains("(of 2: layers ", p.Message);
        Assert.Contains("a GPU slot of gpu-node", p.Message);
        Assert.Contains("run.method = lora or qlora", p.Message);
        // Eight stages hold it.
        Assert.Empty(RunSpecValidator.Problems(spec with { Parallel = spec.Parallel with { Pipeline = 8 } },
            new FixedSlotInventory(new NodeSlots(8, SlotKind.Gpu, 85_017_493_504))));
    }

    [Fact]
    public void Force_admits_a_run_the_plan_refuses()
    {
        var spec = Spec("data.max-seq-length=4096", "admission.force=on");
        Assert.True(spec.Admission.Force);
        Assert.Empty(RunSpecValidator.Problems(spec, Cpu(100_000_000)));
        Assert.Single(RunSpecValidator.Problems(spec with { Admission = AdmissionSpec.Default }, Cpu(100_000_000)));
    }

    [Fact]
    public void A_gpu_slot_keeps_a_gigabyte_for_cuda_and_a_cpu_slot_does_not()
    {
        var spec = Spec("data.max-seq-length=16");
        Assert.Empty(RunSpecValidator.Problems(spec, Cpu(GiB)));
        var p = Refused(spec, new FixedSlotInventory(new NodeSlots(1, SlotKind.Gpu, GiB), "gpu-node"));
        Assert.Contains("reserve 1.", p.Message); // 1 GiB = 1.07 GB and a little fragmentation
    }

    [Fact]
    public void The_smallest_slot_of_the_cluster_decides_and_slots_of_unknown_memory_are_not_checked()
    {
        var spec = Spec();
        var mixed = new Offers(new SlotOffer("big", new NodeSlots(4, SlotKind.Cpu, 64 * GiB)), new SlotOffer("small", new NodeSlots(1, SlotKind.Cpu, 200_000_000)),
            new SlotOffer("unknown", new NodeSlots(2, SlotKind.Cpu)));
        Assert.Contains("a CPU slot of small", Refused(spec, mixed).Message);
        Assert.Empty(RunSpecValidator.Problems(spec, new Offers(new SlotOffer("big", new NodeSlots(4, SlotKind.Cpu, 64 * GiB)),
            new SlotOffer("unknown", new NodeSlots(2, SlotKind.Cpu)))));
        Assert.Empty(RunSpecValidator.Problems(spec, availableSlots: 1)); // a count alone: no memory to check against
    }

    sealed class Offers(params SlotOffer[] offers) : ISlotInventory
    {
        IReadOnlyList<SlotOffer> ISlotInventory.Offers() => offers;
    }
}
