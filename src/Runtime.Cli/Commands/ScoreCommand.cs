using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cli.Commands;

/// <summary>
/// `rt score`: per input row, the model's log-probability of each next token and the mean NLL over the labelled
/// tokens. Rows are {"input_ids": [...], "labels"?: [...]} (labels -100 are not scored; without labels every token
/// after the first is) or {"text": "..."} (BOS + the encoded text) when the model has a tokenizer.
/// Output rows: {"loss": mean NLL over labelled tokens, "token_logprobs": [log p(token[i+1] | token[..i]), ...]}.
/// </summary>
public static class ScoreCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var adapter = ModelFolder.AdapterOption();
        var data = new Option<string>("--data") { Description = "Input JSONL", Required = true };
        var output = new Option<string>("--out") { Description = "Output JSONL (written atomically)", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "fp32 | bf16 compute", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file for text rows when the model folder has none" };

        var command = new Command("score", "Per-token log-probabilities and loss of each row of a JSONL file");
        foreach (var o in new Option[] { model, adapter, data, output, dtype, tokenizer }) command.Options.Add(o);
        CommandAction.Set(command, (parse, stdout) =>
        {
            var folder = parse.GetValue(model)!;
            var input = parse.GetValue(data)!;
            if (!File.Exists(input)) throw new UsageException($"--data {input}: no such file");
            var tok = ModelFolder.TryLoadTokenizer(folder, parse.GetValue(tokenizer));
            using var slice = ModelFolder.LoadForInference(folder, ModelFolder.ParseDType(parse.GetValue(dtype)!), parse.GetValue(adapter));

            var results = new StringBuilder();
            int rows = 0;
            double lossSum = 0;
            foreach (var (line, number) in File.ReadLines(input).Select((l, i) => (l, i + 1)))
            {
                if (string.IsNullOrWhiteSpace(line)) continue;
                var (ids, labels) = ParseRow(line, input, number, tok, slice.Config.VocabSize);
                var (loss, logProbs) = Score(slice, ids, labels);
                results.Append(new JsonObject
                {
                    ["loss"] = loss,
                    ["token_logprobs"] = new JsonArray(logProbs.Select(p => (JsonNode)p).ToArray()),
                }.ToJsonString()).Append('\n');
                rows++;
                lossSum += loss;
            }
            if (rows == 0) throw new UsageException($"{input}: no rows to score");
            AtomicFile.Write(parse.GetValue(output)!, s => s.Write(Encoding.UTF8.GetBytes(results.ToString())));
            stdout.WriteLine($"scored {rows} rows; mean loss {lossSum / rows:F4}; wrote {parse.GetValue(output)}");
            return CommandAction.ExitOk;
        });
        return command;
    }

    static (long[] Ids, long[] Labels) ParseRow(string line, string file, int number, Llama3Tokenizer? tok, int vocab)
    {
        JsonObject row;
        try
        {
            row = JsonNode.Parse(line) as JsonObject ?? throw new UsageException($"{file}:{number}: a row must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new UsageException($"{file}:{number}: invalid JSON: {e.Message}");
        }

        long[] ids;
        if (row["input_ids"] is JsonArray idArray)
            ids = Longs(idArray, file, number, "input_ids");
        else if (row["text"] is JsonValue text && text.TryGetValue<string>(out var s))
            ids = tok is null
                ? throw new UsageException($"{file}:{number}: a text row needs a tokenizer (the model folder has none; pass --tokenizer)")
                : [tok.BeginOfText, .. tok.Encode(s, allowSpecial: false).Select(i => (long)i)];
        else
            throw new UsageException($"{file}:{number}: expected \"input_ids\" (a list of ids) or \"text\" (a string)");

        if (ids.Length < 2) throw new UsageException($"{file}:{number}: a row needs at least 2 tokens to score");
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new UsageException($"{file}:{number}: input_ids[{i}] = {ids[i]} is outside the vocabulary (0..{vocab - 1})");

        long[] labels = ids;
        if (row["labels"] is JsonArray labelArray)
        {
            labels = Longs(labelArray, file, number, "labels");
            if (labels.Length != ids.Length)
                throw new UsageException($"{file}:{number}: labels has {labels.Length} entries, input_ids {ids.Length}");
            for (int i = 0; i < labels.Length; i++)
                if (labels[i] != CausalLmLoss.IgnoreIndex && (labels[i] < 0 || labels[i] >= vocab))
                    throw new UsageException($"{file}:{number}: labels[{i}] = {labels[i]} is neither -100 nor in the vocabulary (0..{vocab - 1})");
            if (labels.Skip(1).All(l => l == CausalLmLoss.IgnoreIndex))
                throw new UsageException($"{file}:{number}: every label after the first is -100: nothing to score");
        }
        return (ids, labels);
    }

    static long[] Longs(JsonArray array, string file, int number, string key) =>
        array.Select((v, i) => v is JsonValue value && value.TryGetValue<long>(out var x)
            ? x
            : throw new UsageException($"{file}:{number}: {key}[{i}] is not an integer")).ToArray();

    static (double Loss, float[] LogProbs) Score(LlamaSlice slice, long[] ids, long[] labels)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var input = tensor(ids, [1, ids.Length]);
        var logits = slice.forward(input, AttentionContext.SequentialPositions(1, ids.Length));
        var logProbs = CausalLmLoss.TokenLogProbs(logits, input)[0].data<float>().ToArray();
        // As transformers does: the logits at i predict labels[i + 1]; -100 is not scored; the loss is their mean NLL.
        var target = tensor(labels, [1, labels.Length]);
        var (sum, count) = CausalLmLoss.Compute(logits, target);
        return (sum.item<float>() / (double)count, logProbs);
    }
}
