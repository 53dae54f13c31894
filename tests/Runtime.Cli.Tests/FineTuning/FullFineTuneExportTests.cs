using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// Issue 3: full fine-tuning of the tiny preset through the training loop, in fp32 and in bf16 (fp32 masters), and
/// `rt export` of its checkpoint as a Hugging Face folder: weights in the base's torch_dtype, the base's config.json,
/// the tokenizer files; loaded back, it gives bitwise the logits of the trained model in memory.
/// </summary>
[Collection(FineTuningCollection.Name)]
public sealed class FullFineTuneExportTests
{
    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")]
    public void An_exported_full_fine_tune_has_the_trained_model_s_logits(string dtypeName)
    {
        using var dir = new ScratchFolder();
        var model = TinyRun.Init(dir["tiny"], dtype: dtypeName);
        var data = TinyRun.WriteChat(dir["chat.jsonl"], TinyRun.Pairs);
        var dtype = dtypeName == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;

        using var pipeline = TinyRun.OpenData(data, model, maxSeqLength: 32, packing: true);
        using var batch = pipeline.Collator.Collate([0, 1, 2]);
        float[] trained, untouched;
        using (var slice = TinyRun.Load(model, dtype))
        {
            untouched = Logits(slice, batch);
            using var loop = new TrainingLoop(slice, TrainingBatches.From(pipeline), new TrainingLoopOptions
            {
                Layout = new BatchLayout(2, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-3, 3, 0), MaxSteps = 3,
                Recompute = true, Seed = 1, OutputFolder = dir["run"], CheckpointEvery = 3, Model = CheckpointModel.Full(model),
            });
            Assert.Equal(dtype == ScalarType.BFloat16, loop.Optimizer.UsesMasterWeights);
            loop.Run();
            trained = Logits(slice, batch);
        }
        Assert.NotEqual(untouched, trained);

        var (exit, stdout, stderr) = Rt.Invoke("export", "--checkpoint", Path.Combine(dir["run"], "checkpoint-3"), "--out", dir["export"]);
        Assert.True(exit == 0, stderr);
        Assert.Contains($"model ({LlamaTensorNames.All(Runtime.Model.Config.LlamaConfig.Load(model)).Count()} tensors, {dtypeName})", stdout);

        Assert.Equal(File.ReadAllBytes(Path.Combine(model, "config.json")), File.ReadAllBytes(Path.Combine(dir["export"], "config.json")));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(model, file)), File.ReadAllBytes(Path.Combine(dir["export"], file)));
        using (var exported = new HfModelFolder(dir["export"]))
            Assert.All(exported.Names, n => Assert.Equal(dtype == ScalarType.BFloat16 ? "BF16" : "F32", exported.Describe(n).DType));

        using (var reloaded = TinyRun.Load(dir["export"], dtype, requiresGrad: false))
            Assert.Equal(trained, Logits(reloaded, batch));

        // A user's view of the same folder: it generates like any model folder.
        var generated = Rt.Invoke("generate", "--model", dir["export"], "--prompt", "Hello", "--greedy", "--max-new-tokens", "2",
            "--dtype", dtypeName);
        Assert.True(generated.Exit == 0, generated.Err);
    }

    static float[] Logits(LlamaSlice slice, MicroBatch batch)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return slice.forward(batch.InputIds, batch.Positions, batch.SegmentIds).to(ScalarType.Float32).data<float>().ToArray();
    }
}
