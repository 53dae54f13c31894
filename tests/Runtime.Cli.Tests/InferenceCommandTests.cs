using System.Text.Json.Nodes;
using Runtime.Model.Llama;
using Runtime.Model.Tests.Parity;
using Runtime.Model.Tests.Tokenization;
using Runtime.Model.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests;

/// <summary>`rt generate` and `rt score` on real folders: a tiny random model with the real tokenizer, and transformers' fixtures.</summary>
public sealed class InferenceCommandTests : IClassFixture<InferenceCommandTests.TinyModel>
{
    public sealed class TinyModel : IDisposable
    {
        public ScratchFolder Dir { get; } = new();
        public string Folder => Dir["tiny"];

        public TinyModel()
        {
            var (exit, _, err) = Rt.Invoke("init", "--preset", "tiny", "--out", Folder, "--seed", "5", "--tokenizer", TokenizerDownload.TokenizerJson);
            if (exit != 0) throw new InvalidOperationException(err);
        }

        public void Dispose() => Dir.Dispose();
    }

    readonly TinyModel tiny;

    public InferenceCommandTests(TinyModel tiny) => this.tiny = tiny;

    [Fact]
    public void Greedy_generation_prints_the_argmax_continuation_of_the_full_forward()
    {
        var (exit, stdout, stderr) = Rt.Invoke("generate", "--model", tiny.Folder, "--prompt", "Hello world", "--max-new-tokens", "6", "--greedy");
        Assert.True(exit == 0, stderr);

        // Independent of the generator's KV cache: re-run the whole sequence each time and take the argmax.
        var tok = Runtime.Model.Tokenization.Llama3Tokenizer.Load(TokenizerDownload.TokenizerJson);
        using var source = new HfModelFolder(tiny.Folder);
        using var model = LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions { RequiresGrad = false });
        var ids = new List<long> { tok.BeginOfText };
        ids.AddRange(tok.Encode("Hello world", allowSpecial: false).Select(i => (long)i));
        var generated = new List<int>();
        using (no_grad())
            for (int step = 0; step < 6; step++)
            {
                using var scope = NewDisposeScope();
                var logits = model.forward(tensor(ids.ToArray(), [1, ids.Count]), AttentionContext.SequentialPositions(1, ids.Count));
                int next = (int)logits[0, -1].argmax().item<long>();
                generated.Add(next);
                ids.Add(next);
                if (source.Config.EosTokenIds.Contains(next)) break;
            }
        var text = generated.Where(id => !source.Config.EosTokenIds.Contains(id)).ToArray();
        Assert.Equal(tok.Decode(text) + Environment.NewLine, stdout);
    }

    [Fact]
    public void Chat_generation_renders_the_template_and_sampling_is_seeded()
    {
        string Run(string seed) => Rt.Invoke("generate", "--model", tiny.Folder, "--prompt", "Hi", "--chat", "--system", "Be brief.",
            "--max-new-tokens", "8", "--seed", seed).Out;
        Assert.Equal(Run("1"), Run("1"));
        var (_, _, stderr) = Rt.Invoke("generate", "--model", tiny.Folder, "--prompt", "Hi", "--chat", "--system", "Be brief.", "--max-new-tokens", "1");
        // The folder's tokenizer_config.json carries Llama 3's template: BOS, system turn, user turn, assistant header.
        var tok = Runtime.Model.Tokenization.Llama3Tokenizer.Load(TokenizerDownload.TokenizerJson);
        var expectedPrompt = 1 + 3 + 1 + tok.Encode("Be brief.", false).Length + 1 + 3 + 1 + tok.Encode("Hi", false).Length + 1 + 3 + 1;
        Assert.Contains($"prompt {expectedPrompt} tokens", stderr);
    }

    [Fact]
    public void Generate_errors_name_the_problem_and_exit_1()
    {
        using var dir = new ScratchFolder();
        var missing = Rt.Invoke("generate", "--model", dir["none"], "--prompt", "x");
        Assert.Equal(1, missing.Exit);
        Assert.Contains("none", missing.Err);

        var noTokenizer = Rt.Invoke("generate", "--model", HfFixtures.Path_("micro-untied"), "--prompt", "x");
        Assert.Equal(1, noTokenizer.Exit);
        Assert.Contains("--tokenizer", noTokenizer.Err);
    }

    [Fact]
    public void Score_matches_transformers_loss_and_log_probabilities()
    {
        using var dir = new ScratchFolder();
        var expected = HfFixtures.Expected;
        var rows = expected["input_ids"]!.AsArray().Zip(expected["labels"]!.AsArray(),
            (ids, labels) => new JsonObject { ["input_ids"] = ids!.DeepClone(), ["labels"] = labels!.DeepClone() }.ToJsonString());
        File.WriteAllLines(dir["in.jsonl"], rows);

        var (exit, _, stderr) = Rt.Invoke("score", "--model", HfFixtures.Path_("micro-untied"), "--data", dir["in.jsonl"], "--out", dir["out.jsonl"]);
        Assert.True(exit == 0, stderr);
        var scored = File.ReadAllLines(dir["out.jsonl"]).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(2, scored.Length);

        // transformers' loss is the mean over both rows' labelled tokens; recombine Runtime's per-row means by count.
        var labelCounts = expected["labels"]!.AsArray().Select(r => r!.AsArray().Skip(1).Count(v => v!.GetValue<int>() != -100)).ToArray();
        var combined = scored.Select((r, i) => r["loss"]!.GetValue<double>() * labelCounts[i]).Sum() / labelCounts.Sum();
        Assert.Equal(expected["micro-untied"]!["loss_eager"]!.GetValue<double>(), combined, 1e-5);

        var want = expected["micro-untied"]!["token_logprobs"]!.AsArray();
        for (int r = 0; r < 2; r++)
        {
            var got = scored[r]["token_logprobs"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            var reference = want[r]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            Assert.Equal(reference.Length, got.Length);
            for (int i = 0; i < got.Length; i++) Assert.Equal(reference[i], got[i], 1e-4);
        }
    }

    [Fact]
    public void Score_with_a_peft_adapter_matches_transformers_with_peft()
    {
        using var dir = new ScratchFolder();
        var expected = HfFixtures.Expected;
        var rows = expected["input_ids"]!.AsArray().Zip(expected["labels"]!.AsArray(),
            (ids, labels) => new JsonObject { ["input_ids"] = ids!.DeepClone(), ["labels"] = labels!.DeepClone() }.ToJsonString());
        File.WriteAllLines(dir["in.jsonl"], rows);
        var (exit, _, stderr) = Rt.Invoke("score", "--model", HfFixtures.Path_("micro-untied"), "--adapter", HfFixtures.Path_("micro-untied-lora"),
            "--data", dir["in.jsonl"], "--out", dir["out.jsonl"]);
        Assert.True(exit == 0, stderr);
        var labelCounts = expected["labels"]!.AsArray().Select(r => r!.AsArray().Skip(1).Count(v => v!.GetValue<int>() != -100)).ToArray();
        var combined = File.ReadAllLines(dir["out.jsonl"]).Select((l, i) => JsonNode.Parse(l)!["loss"]!.GetValue<double>() * labelCounts[i]).Sum()
                       / labelCounts.Sum();
        Assert.Equal(expected["micro-untied-lora"]!["loss"]!.GetValue<double>(), combined, 1e-5);
        Assert.NotEqual(expected["micro-untied"]!["loss_eager"]!.GetValue<double>(), combined, 1e-3);

        var missing = Rt.Invoke("score", "--model", HfFixtures.Path_("micro-untied"), "--adapter", dir["nope"], "--data", dir["in.jsonl"], "--out", dir["o2.jsonl"]);
        Assert.Equal(1, missing.Exit);
        Assert.Contains("--adapter", missing.Err);
    }

    [Fact]
    public void Score_text_rows_tokenize_with_bos_like_the_ids_row()
    {
        using var dir = new ScratchFolder();
        var tok = Runtime.Model.Tokenization.Llama3Tokenizer.Load(TokenizerDownload.TokenizerJson);
        var ids = new[] { tok.BeginOfText }.Concat(tok.Encode("Hello world", false)).ToArray();
        File.WriteAllLines(dir["in.jsonl"], ["{\"text\": \"Hello world\"}", new JsonObject { ["input_ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()) }.ToJsonString()]);
        Assert.Equal(0, Rt.Invoke("score", "--model", tiny.Folder, "--data", dir["in.jsonl"], "--out", dir["out.jsonl"]).Exit);
        var lines = File.ReadAllLines(dir["out.jsonl"]);
        Assert.Equal(lines[0], lines[1]);
    }

    [Theory]
    [InlineData("{\"input_ids\": [1, 2", "in.jsonl:2: invalid JSON")]
    [InlineData("{\"input_ids\": [1, 999]}", "in.jsonl:2: input_ids[1] = 999 is outside the vocabulary (0..255)")]
    [InlineData("{\"input_ids\": [1, 2], \"labels\": [1]}", "in.jsonl:2: labels has 1 entries, input_ids 2")]
    [InlineData("{\"input_ids\": [1, 2], \"labels\": [-100, -100]}", "in.jsonl:2: every label after the first is -100")]
    [InlineData("{\"text\": \"needs a tokenizer\"}", "in.jsonl:2: a text row needs a tokenizer")]
    [InlineData("{\"messages\": []}", "in.jsonl:2: expected \"input_ids\"")]
    public void Score_rejects_bad_rows_naming_file_and_line_and_writes_nothing(string badRow, string message)
    {
        using var dir = new ScratchFolder();
        File.WriteAllLines(dir["in.jsonl"], ["{\"input_ids\": [1, 2, 3]}", badRow]);
        var (exit, _, stderr) = Rt.Invoke("score", "--model", HfFixtures.Path_("micro-untied"), "--data", dir["in.jsonl"], "--out", dir["out.jsonl"]);
        Assert.Equal(1, exit);
        Assert.Contains(message, stderr);
        Assert.False(File.Exists(dir["out.jsonl"]));
    }
}
