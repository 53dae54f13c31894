using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Autoregressive generation with a KV cache on a whole-model slice: one forward over the prompt, then one token per
/// step at position prompt_length + step. Greedy, or temperature plus top-p sampling with HF's warper semantics and a
/// seeded generator. (Named LlamaGenerator, not Generator, so it never clashes with torch.Generator under
/// <c>using static TorchSharp.torch</c>.)
/// </summary>
public sealed class LlamaGenerator
{
    readonly LlamaSlice model;

    public LlamaGenerator(LlamaSlice model)
    {
        if (model.VocabularyParallelGroup is not null)
            throw new ArgumentException(
                $"generation needs the full logits of the whole model; {model.Spec} is a vocabulary-parallel shard that computes only its vocabulary columns");
        if (!model.Spec.IsWhole(model.Config))
            throw new ArgumentException($"generation needs the whole model (embedding, all layers, head); got {model.Spec}");
        this.model = model;
    }

    /// <summary>The new token ids (not the prompt); ends with the eos id when one stopped it.</summary>
    public int[] Generate(IReadOnlyList<int> prompt, GenerationOptions options)
    {
        options.Validate();
        if (prompt.Count == 0) throw new ArgumentException("the prompt must hold at least one token", nameof(prompt));
        var eos = new HashSet<int>(options.EosTokenIds ?? model.Config.EosTokenIds);
        var generated = new List<int>(options.MaxNewTokens);
        if (options.MaxNewTokens == 0) return [];

        using var noGrad = no_grad();
        using var cache = new KvCache(prompt.Count + options.MaxNewTokens);
        using var sampler = new torch.Generator((ulong)options.Seed);
        var device = model.Options.Device ?? CPU;

        int next = Step(prompt.Select(t => (long)t).ToArray(), 0, cache, options, sampler, device);
        while (true)
        {
            generated.Add(next);
            if (eos.Contains(next) || generated.Count == options.MaxNewTokens) return [.. generated];
            next = Step([next], prompt.Count + generated.Count - 1, cache, options, sampler, device);
        }
    }

    int Step(long[] tokens, long start, KvCache cache, GenerationOptions options, torch.Generator sampler, Device device)
    {
        using var scope = NewDisposeScope();
        var ids = tensor(tokens, [1, tokens.Length], device: device);
        var positions = AttentionContext.SequentialPositions(1, tokens.Length, start, device);
        var logits = model.forward(ids, positions, null, cache);
        var last = logits[0, -1];
        return (int)Pick(last, options, sampler).ToInt64();
    }

    /// <summary>
    /// The next token from fp32 logits [vocab]: argmax when greedy; else logits / temperature, HF's TopPLogitsWarper
    /// (drop the least likely tokens whose cumulative mass is at most 1 - top_p, always keeping the most likely), softmax,
    /// and one multinomial draw from <paramref name="sampler"/>.
    /// </summary>
    public static Tensor Pick(Tensor logits, GenerationOptions options, torch.Generator sampler)
    {
        using var scope = NewDisposeScope();
        if (options.Temperature <= 0) return logits.argmax(-1, false).MoveToOuterDisposeScope();

        var scaled = logits.to(ScalarType.Float32) / options.Temperature;
        if (options.TopP < 1.0)
        {
            var (sorted, order) = scaled.sort(-1, false, false);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var dropSorted = cumulative.le(1 - options.TopP);
            dropSorted[-1] = tensor(false); // the most likely token always stays
            var drop = dropSorted.scatter(-1, order, dropSorted);
            scaled = scaled.masked_fill(drop, float.NegativeInfinity);
        }
        var probs = scaled.softmax(-1);
        return probs.multinomial(1, false, sampler).squeeze(-1).MoveToOuterDisposeScope();
    }
}
