using System.Text.Json;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;
using Runtime.Training.Tests.Data;
using Runtime.Training.Tests.Engine;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Metrics;

/// <summary>The memory a training step reports: the allocator reading itself, and the per-category bytes in the metrics logs.</summary>
[Collection(MemoryMeasurementCollection.Name)]
public sealed class StepMemoryTests : IDisposable
{
    readonly DataTempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void The_allocator_reading_sees_a_tensor_come_and_go()
    {
        Assert.True(NativeHeap.IsAvailable, "glibc's mallinfo2 (Linux, glibc 2.33+) is what the memory accounting reads");
        long before = NativeHeap.BytesInUse();
        var t = zeros(16L << 20, dtype: ScalarType.Float32); // 64 MiB
        long with = NativeHeap.BytesInUse();
        t.Dispose();
        long after = NativeHeap.BytesInUse();
        // Other threads' small frees may land between two readings (a few KB), hence the slack below.
        Assert.InRange(with - before, (64L << 20) - (64L << 10), (64L << 20) + (1L << 20));
        Assert.InRange(with - after, (64L << 20) - (64L << 10), (64L << 20) + (1L << 20));
    }

    [Fact]
    public void Kept_memory_serves_a_block_over_glibc_s_mmap_limit_from_the_arena()
    {
        // 40 MiB: above the largest mmap threshold glibc ever picks by itself (32 MiB), so by default it gets a mapping
        // of its own, faulted in on creation and unmapped on disposal; and below a thread arena's 64 MiB heap.
        Assert.True(NativeHeap.KeepFreedMemory(), "mallopt refused M_MMAP_MAX or M_TRIM_THRESHOLD");
        long mapped = NativeHeap.OwnMappingBytes();
        long before = NativeHeap.BytesInUse();
        using (var t = zeros(10L << 20, dtype: ScalarType.Float32))
        {
            Assert.InRange(NativeHeap.BytesInUse() - before, (40L << 20) - (64L << 10), (40L << 20) + (1L << 20));
            Assert.Equal(mapped, NativeHeap.OwnMappingBytes());
        }
        Assert.Equal(mapped, NativeHeap.OwnMappingBytes());
    }

    [Fact]
    public void Every_step_logs_its_memory_by_category_to_tensorboard_and_json_lines()
    {
        var config = MicroModel.Config(layers: 2);
        using var model = MicroModel.Create(config);
        var folder = _temp.File("tb");
        var jsonl = _temp.File(JsonLinesMetricsSink.DefaultFileName);
        IReadOnlyList<StepRecord> records;
        using (var tensorBoard = new TensorBoardMetricsSink(folder))
        using (var lines = new JsonLinesMetricsSink(jsonl))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), new TrainingLoopOptions
               {
                   Layout = new BatchLayout(4, 2, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-3, 3, 0), MaxSteps = 3,
                   Recompute = true, Metrics = [tensorBoard, lines],
               }))
            records = loop.Run();

        // Full fine-tuning in fp32: every parameter is trainable, with an fp32 gradient and two AdamW moments.
        long parameterBytes = 4 * config.ParameterCount;
        Assert.All(records, r =>
        {
            var m = Assert.IsType<StepMemory>(r.Memory);
            Assert.Equal((0L, parameterBytes, parameterBytes, 2 * parameterBytes), (m.Weights, m.Trainable, m.Gradients, m.Optimizer));
            Assert.True(m.ActivationsSaved > 0, $"saved activations {m.ActivationsSaved}");
            Assert.Null(m.ActivationsPeak); // only watched when asked
            Assert.True(m.HeapInUse > parameterBytes * 4);
        });

        var scalars = TfEventFile.Read(Assert.Single(Directory.GetFiles(folder, "events.out.tfevents.*")))
            .Skip(1).SelectMany(e => e.Values.Select(v => (e.Step, v.Tag, v.Value))).ToList();
        foreach (var r in records)
        {
            float Tag(string tag) => scalars.Single(s => s.Step == r.Step && s.Tag == tag).Value;
            Assert.Equal((float)r.Memory!.Trainable, Tag("memory/trainable_bytes"));
            Assert.Equal((float)r.Memory.Optimizer, Tag("memory/optimizer_bytes"));
            Assert.Equal((float)r.Memory.Gradients, Tag("memory/gradients_bytes"));
            Assert.Equal((float)r.Memory.Weights, Tag("memory/weights_bytes"));
            Assert.Equal((float)r.Memory.ActivationsSaved, Tag("memory/activations_saved_bytes"));
            Assert.Equal((float)r.Memory.HeapInUse, Tag("memory/heap_in_use_bytes"));
        }

        var logged = File.ReadAllLines(jsonl).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("memory")).ToList();
        Assert.Equal(records.Select(r => r.Memory!.ActivationsSaved), logged.Select(m => m.GetProperty("activations_saved_bytes").GetInt64()));
        Assert.All(logged, m => Assert.Equal(2 * parameterBytes, m.GetProperty("optimizer_bytes").GetInt64()));
    }

    [Fact]
    public void Bf16_weights_count_2_bytes_trainable_and_their_fp32_masters_as_optimizer_state()
    {
        var config = MicroModel.Config(layers: 1);
        using var model = MicroModel.Create(config, dtype: ScalarType.BFloat16);
        using var loop = new TrainingLoop(model, MicroModel.Batches(), new TrainingLoopOptions
        {
            Layout = new BatchLayout(4, 2, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-3, 1, 0), MaxSteps = 1,
        });
        var m = loop.RunStep().Memory!;
        long n = config.ParameterCount;
        // The planner's 2 + 4 + 12 bytes a parameter: bf16 weights, fp32 gradients (in the masters), AdamW + masters.
        Assert.Equal((2 * n, 4 * n, 12 * n), (m.Trainable, m.Gradients, m.Optimizer));
    }
}
