using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

public class LlamaGeneratorTests
{
    static readonly int[] Prompt = [5, 17, 42, 8, 63];
    static readonly int[] NeverEos = [-1];

    static LlamaSlice Model(AttentionImplementation attention = AttentionImplementation.ScaledDotProduct, bool tied = true) =>
        MicroLlama.Load(MicroLlama.Config(tied), MicroLlama.Options(ScalarType.Float32, attention));

    [Theory]
    [InlineData(AttentionImplementation.Eager)]
    [InlineData(AttentionImplementation.ScaledDotProduct)]
    public void Cached_greedy_generation_equals_argmax_of_the_full_forward_on_the_growing_sequence(AttentionImplementation attention)
    {
        using var model = Model(attention, tied: false);
        var generated = new LlamaGenerator(model).Generate(Prompt, new GenerationOptions { MaxNewTokens = 12, EosTokenIds = NeverEos });
        Assert.Equal(12, generated.Length);

        var sequence = Prompt.ToList();
        using var noGrad = no_grad();
        foreach (var token in generated)
        {
            using var scope = NewDisposeScope();
            var logits = model.forward(MicroLlama.Rows([.. sequence]), AttentionContext.SequentialPositions(1, sequence.Count));
            Assert.Equal(logits[0, -1].argmax().ToInt64(), token);
            sequence.Add(token);
        }
    }

    [Theory]
    [InlineData(AttentionImplementation.Eager)]
    [InlineData(AttentionImplementation.ScaledDotProduct)]
    public void A_forward_in_two_cached_chunks_equals_one_full_forward(AttentionImplementation attention)
    {
        using var model = Model(attention);
        var tokens = MicroLlama.RandomTokens(13, 9);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var full = model.forward(MicroLlama.Rows(tokens), AttentionContext.SequentialPositions(1, 13));

        using var cache = new KvCache(initialCapacity: 4); // small, so the second chunk makes the buffers grow
        var head = model.forward(MicroLlama.Rows(tokens[..7]), AttentionContext.SequentialPositions(1, 7), null, cache);
        Assert.Equal(7, cache.LengthOf(0));
        var tail = model.forward(MicroLlama.Rows(tokens[7..]), AttentionContext.SequentialPositions(1, 6, start: 7), null, cache);
        Assert.Equal(13, cache.LengthOf(2));

        Assert.True((cat([head, tail], 1) - full).abs().max().ToDouble() < 1e-5);
    }

    [Fact]
    public void Generation_stops_on_any_of_several_eos_ids()
    {
        // Untied and sampled (seeded): with tied random embeddings the micro model just repeats its last token.
        using var model = Model(tied: false);
        var generator = new LlamaGenerator(model);
        var sampling = new GenerationOptions { MaxNewTokens = 10, EosTokenIds = NeverEos, Temperature = 1.0, Seed = 3 };
        var free = generator.Generate(Prompt, sampling);
        int stop = Enumerable.Range(1, free.Length - 1).First(i => !free[..i].Contains(free[i]));
        int absent = Enumerable.Range(0, 97).First(t => !free.Contains(t));

        foreach (var eos in new[] { new[] { absent, free[stop] }, new[] { free[stop], absent } })
        {
            var stopped = generator.Generate(Prompt, sampling with { EosTokenIds = eos });
            Assert.Equal(free[..(stop + 1)], stopped);
        }

        // Without explicit ids the config's eos ids apply.
        using var configured = MicroLlama.Load(MicroLlama.Config(tied: false) with { EosTokenIds = [absent, free[stop]] },
            MicroLlama.Options(ScalarType.Float32, AttentionImplementation.ScaledDotProduct));
        Assert.Equal(free[..(stop + 1)], new LlamaGenerator(configured).Generate(Prompt, sampling with { EosTokenIds = null }));
    }

    [Fact]
    public void Top_p_near_zero_samples_the_greedy_tokens()
    {
        using var model = Model(tied: false);
        var generator = new LlamaGenerator(model);
        var greedy = generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 10, EosTokenIds = NeverEos });
        foreach (var seed in new long[] { 1, 2, 3 })
        {
            var sampled = generator.Generate(Prompt, new GenerationOptions
            {
                MaxNewTokens = 10, EosTokenIds = NeverEos, Temperature = 1.5, TopP = 1e-9, Seed = seed,
            });
            Assert.Equal(greedy, sampled);
        }
    }

    [Fact]
    public void A_seeded_sampler_is_reproducible_and_seeds_differ()
    {
        using var model = Model(tied: false);
        var generator = new LlamaGenerator(model);
        int[] Sample(long seed) => generator.Generate(Prompt, new GenerationOptions
        {
            MaxNewTokens = 10, EosTokenIds = NeverEos, Temperature = 1.2, TopP = 0.95, Seed = seed,
        });
        Assert.Equal(Sample(42), Sample(42));
        var distinct = new[] { 1L, 2, 3, 4 }.Select(s => string.Join(",", Sample(s))).Distinct().Count();
        Assert.True(distinct > 1, "four seeds sampled the same tokens");
    }

    [Fact]
    public void Top_p_keeps_the_most_likely_tokens_covering_p_and_drops_the_rest()
    {
        // probabilities 0.5, 0.3, 0.15, 0.05: HF drops tokens whose ascending cumulative mass is <= 1 - 0.7 = 0.3,
        // i.e. the 0.05 and 0.15 tokens (cumulative 0.05, 0.2), and keeps 0.3 and 0.5.
        using var scope = NewDisposeScope();
        var logits = tensor(new[] { 0.3f, 0.5f, 0.05f, 0.15f }).log();
        using var sampler = new torch.Generator(7);
        var options = new GenerationOptions { Temperature = 1.0, TopP = 0.7 };
        var counts = new int[4];
        for (int i = 0; i < 400; i++)
            counts[LlamaGenerator.Pick(logits, options, sampler).ToInt64()]++;
        Assert.Equal(0, counts[2] + counts[3]);
        Assert.InRange(counts[1] / 400.0, 0.5, 0.75); // 0.5 / 0.8 = 0.625 expected
        Assert.True(counts[0] > 0);
    }

    [Fact]
    public void Generation_stops_at_max_new_tokens_and_needs_the_whole_model()
    {
        using var model = Model();
        Assert.Equal(7, new LlamaGenerator(model).Generate(Prompt, new GenerationOptions { MaxNewTokens = 7, EosTokenIds = NeverEos }).Length);
        using var part = MicroLlama.Load(MicroLlama.Config(tied: true), slice: new LlamaSliceSpec(0, 2, true, false));
        Assert.Throws<ArgumentException>(() => new LlamaGenerator(part));
    }
}
