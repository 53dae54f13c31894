using System.Globalization;
using Runtime.Cli.Tests.FineTuning;
using Runtime.Cluster.Driving;
using Xunit.Abstractions;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>
/// The user's whole path: `rt init`, `rt finetune` on a chat dataset (the cluster runtime: coordinator, driver, data
/// loader, worker), then `rt generate --adapter ... --chat --greedy` in a fresh command answers what it was trained on.
/// It needs the training side and the prompting side to agree on every token of the conversation (the chat template,
/// the assistant mask, the end-of-turn token), which no layout-equivalence test over pre-tokenized rows can show.
/// </summary>
[Collection(FinetuneCollection.Name)]
public sealed class FinetuneAnswersTests(ITestOutputHelper log)
{
    [Fact]
    public void An_rt_finetune_adapter_answers_the_trained_questions_through_rt_generate_chat()
    {
        using var dir = new ScratchFolder();
        var model = TinyRun.Init(dir["tiny"], initStd: 0.3);
        var pairs = TinyRun.Pairs.Take(8).ToList();
        var data = TinyRun.WriteChat(dir["chat.jsonl"], pairs);
        var spec = dir["answers.conf"];
        // 8 conversations a step (one epoch), 60 steps.
        File.WriteAllText(spec, string.Create(CultureInfo.InvariantCulture, $$"""
            run {
              name = "answers"
              model = "{{model}}"
              method = lora
              lora { r = 8, alpha = 16, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
              data { path = "{{data}}", max-seq-length = 64, packing = off }
              train { micro-batch-size = 4, grad-accum = 2, epochs = 60, max-steps = -1, lr = 1e-2, schedule = cosine,
                      warmup-ratio = 0.0, weight-decay = 0.0, max-grad-norm = 1.0, precision = fp32,
                      grad-checkpointing = off, seed = 3 }
              checkpoint { every-steps = 60, keep = 1 }
              log { every-steps = 10, tensorboard = off }
              output = "{{dir["run"]}}"
            }
            """));
        var trained = Rt.Invoke("finetune", spec);
        log.WriteLine(trained.Out + trained.Err);
        Assert.True(trained.Exit == 0, trained.Out + trained.Err);

        var adapter = Path.Combine(dir["run"], RunOutputs.AdapterFolder);
        var wrong = new List<string>();
        foreach (var (question, answer) in pairs)
        {
            var generated = Rt.Invoke("generate", "--model", model, "--adapter", adapter, "--chat", "--prompt", question, "--greedy", "--max-new-tokens", "4");
            Assert.True(generated.Exit == 0, generated.Err);
            if (generated.Out != answer + Environment.NewLine) wrong.Add($"{question} -> '{generated.Out.TrimEnd()}' (trained: {answer})");
        }
        Assert.True(wrong.Count == 0, string.Join("; ", wrong));
    }
}
