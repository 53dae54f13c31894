using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// Issue 3: QLoRA on the tiny preset: its projections quantized to NF4 as the folder is loaded (bf16 compute), a few
/// steps reduce the loss, the 4-bit data is untouched by training, and the exported adapter applies to the dense base
/// with `rt generate --adapter`, where it lowers the loss on the training data too.
/// </summary>
[Collection(FineTuningCollection.Name)]
public sealed class QloraTrainingTests(ITestOutputHelper output)
{
    const int Steps = 18;

    [Fact]
    public void Qlora_learns_leaves_the_4_bit_base_alone_and_exports_an_adapter_for_the_dense_base()
    {
        using var dir = new ScratchFolder();
        var model = TinyRun.Init(dir["tiny"], initStd: 0.3);
        var data = TinyRun.WriteChat(dir["chat.jsonl"], TinyRun.Pairs);
        var lora = TinyRun.Lora();

        IReadOnlyList<StepRecord> records;
        using (var pipeline = TinyRun.OpenData(data, model, maxSeqLength: 32, packing: true))
        using (var slice = TinyRun.LoadWithLora(model, lora, seed: 3, ScalarType.BFloat16, nf4: true))
        {
            var base4Bit = slice.named_buffers().Where(b => b.name.Contains(".nf4_weight.", StringComparison.Ordinal))
                .ToDictionary(b => b.name, b => TinyRun.Bits(b.buffer));
            Assert.Equal(4 * 7, base4Bit.Keys.Select(n => n[..n.IndexOf(".nf4_weight.", StringComparison.Ordinal)]).Distinct().Count());
            Assert.All(LoraInjector.TrainableParameters(slice), p => Assert.True(LoraInjector.IsAdapterParameter(p.Name), p.Name));

            using (var loop = new TrainingLoop(slice, TrainingBatches.From(pipeline), new TrainingLoopOptions
                   {
                       Layout = new BatchLayout(1, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-2, Steps, 0), MaxSteps = Steps,
                       Recompute = true, Seed = 1, OutputFolder = dir["run"], CheckpointEvery = Steps,
                       Model = CheckpointModel.Adapter(lora, model, quantizedBase: true),
                   }))
                records = loop.Run();

            foreach (var (name, bits) in base4Bit)
                Assert.True(bits.SequenceEqual(TinyRun.Bits(slice.named_buffers().Single(b => b.name == name).buffer)), $"4-bit buffer '{name}' changed");
        }

        double first = records.Take(6).Average(r => r.Loss), last = records.TakeLast(6).Average(r => r.Loss);
        output.WriteLine($"mean loss of the first and last 6 steps: {first:F3}, {last:F3}");
        Assert.True(last < 0.85 * first, $"loss {first:F3} -> {last:F3}");

        var export = Rt.Invoke("export", "--checkpoint", Path.Combine(dir["run"], $"checkpoint-{Steps}"), "--out", dir["adapter"]);
        Assert.True(export.Exit == 0, export.Err);
        Assert.Contains("qlora adapter", export.Out);

        var generated = Rt.Invoke("generate", "--model", model, "--adapter", dir["adapter"], "--chat", "--prompt", TinyRun.Pairs[0].Question,
            "--greedy", "--max-new-tokens", "4");
        Assert.True(generated.Exit == 0, generated.Err);
        Assert.Contains("tokens in", generated.Err);

        // On the dense fp32 base the adapter trained over NF4 still fits the data better than the base alone.
        double adapted = DenseLoss(model, data, dir["adapter"]), plain = DenseLoss(model, data, adapter: null);
        output.WriteLine($"dense base loss {plain:F3}, with the adapter {adapted:F3}");
        Assert.True(adapted < plain - 0.5, $"dense base loss {plain:F3}, with the adapter {adapted:F3}");
    }

    /// <summary>Mean next-token loss of every training conversation on the dense base, with or without the adapter.</summary>
    static double DenseLoss(string model, string data, string? adapter)
    {
        using var pipeline = TinyRun.OpenData(data, model, maxSeqLength: 32, packing: true);
        using var slice = TinyRun.Load(model, requiresGrad: false);
        if (adapter is not null) PeftAdapter.LoadInto(slice, adapter);
        using var batch = pipeline.Collator.Collate(Enumerable.Range(0, pipeline.Examples.Count).ToList());
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = slice.forward(batch.InputIds, batch.Positions, batch.SegmentIds);
        var loss = CausalLmLoss.Compute(logits, batch.Labels);
        return loss.Sum.item<float>() / (double)loss.Count;
    }
}
