using System.Diagnostics;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using Xunit.Abstractions;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// Issue 3's end-to-end check: a LoRA fine-tune of the tiny preset on a small chat dataset, through the real data
/// pipeline (token cache, packing, the model folder's chat template), learns its answers; `rt export` turns the last
/// checkpoint into a PEFT adapter and `rt generate --adapter ... --chat --greedy` prints each trained answer.
/// <para>
/// The base is `rt init --preset tiny --init-std 0.3`. With transformers' 0.02 the tied 64-wide embedding caps every
/// logit at |h| x |e| = 8 x (0.02 x 8) = 1.3 against 128,256 alternatives, so no adapter can take the loss below about
/// 10.5 nats (from 11.76): the base could not express a confident answer. At 0.3 the cap is about 19.
/// </para>
/// </summary>
[Collection(FineTuningCollection.Name)]
public sealed class LoraMemorisationTests(ITestOutputHelper output)
{
    const int Steps = 640;

    [Fact]
    public void A_short_lora_fine_tune_memorises_the_answers_and_the_exported_adapter_generates_them()
    {
        using var dir = new ScratchFolder();
        var model = TinyRun.Init(dir["tiny"], initStd: 0.3);
        var data = TinyRun.WriteChat(dir["chat.jsonl"], TinyRun.Pairs);
        var lora = TinyRun.Lora(); // r 8, alpha 16, all seven projections

        var clock = Stopwatch.StartNew();
        IReadOnlyList<StepRecord> records;
        // Rows of 32 tokens hold two conversations each (about 16 tokens apiece): 17 packed rows, one a step.
        using (var pipeline = TinyRun.OpenData(data, model, maxSeqLength: 32, packing: true))
        using (var slice = TinyRun.LoadWithLora(model, lora, seed: 7))
        using (var loop = new TrainingLoop(slice, TrainingBatches.From(pipeline), new TrainingLoopOptions
               {
                   Layout = new BatchLayout(1, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Cosine, 3e-3, Steps, 0), MaxSteps = Steps,
                   Recompute = true, Seed = 1, OutputFolder = dir["run"], CheckpointEvery = Steps,
                   Model = CheckpointModel.Adapter(lora, model),
               }))
        {
            Assert.Equal(17, pipeline.Examples.Count);
            records = loop.Run();
        }
        output.WriteLine($"{Steps} steps in {clock.Elapsed.TotalSeconds:F1} s");

        // An epoch is 17 steps: compare the first epoch's mean loss with the last one's.
        double first = records.Take(17).Average(r => r.Loss), last = records.TakeLast(17).Average(r => r.Loss);
        output.WriteLine($"mean loss, first epoch {first:F3}, last epoch {last:F3}");
        Assert.True(last < 0.3 * first, $"loss {first:F3} -> {last:F3}");

        var (exit, stdout, stderr) = Rt.Invoke("export", "--checkpoint", Path.Combine(dir["run"], $"checkpoint-{Steps}"), "--out", dir["adapter"]);
        Assert.True(exit == 0, stderr);
        Assert.Contains("lora adapter", stdout);
        Assert.Equal(lora, PeftAdapter.ReadConfig(dir["adapter"]).Config);

        // Every question answered exactly, through the command a user runs (a new process's view: files only).
        var wrong = new List<string>();
        foreach (var (question, answer) in TinyRun.Pairs)
        {
            var generated = Rt.Invoke("generate", "--model", model, "--adapter", dir["adapter"], "--chat", "--prompt", question,
                "--greedy", "--max-new-tokens", "4");
            Assert.True(generated.Exit == 0, generated.Err);
            if (generated.Out != answer + Environment.NewLine) wrong.Add($"{question} -> '{generated.Out.TrimEnd()}' (trained: {answer})");
        }
        Assert.True(wrong.Count == 0, string.Join("; ", wrong));

        // The answers come from the adapter: the base alone gives none of them.
        var baseOnly = TinyRun.Pairs.Take(4).Select(p => Rt.Invoke("generate", "--model", model, "--chat", "--prompt", p.Question,
            "--greedy", "--max-new-tokens", "4").Out.TrimEnd()).ToList();
        Assert.DoesNotContain(baseOnly, text => TinyRun.Pairs.Any(p => p.Answer == text));
    }
}
