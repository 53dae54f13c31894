using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using Runtime.Model.Tests.Parity;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// A vocabulary-parallel shard reads (or draws) exactly its vocabulary rows of the embedding and the head: from Hugging
/// Face folders (tied and untied), from the counter-based initializer, under a PEFT adapter. A vocabulary the split does
/// not divide is refused; with the option off, or without a split, nothing changes.
/// </summary>
public sealed class VocabularyParallelLoadingTests
{
    /// <summary>A source that records the part of each tensor it was asked for.</summary>
    sealed class RecordingSource(ITensorSource inner) : ITensorSource
    {
        public List<(string Name, TensorSlice? Slice)> Loads { get; } = [];
        public string Location => inner.Location;
        public IReadOnlyCollection<string> Names => inner.Names;
        public bool Contains(string name) => inner.Contains(name);
        public TensorInfo Describe(string name) => inner.Describe(name);

        public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null)
        {
            lock (Loads) Loads.Add((name, slice));
            return inner.Load(name, dtype, slice);
        }

        public void Dispose() => inner.Dispose();
    }

    static LlamaSlice LoadFolder(string folder, ITensorParallelGroup? group = null, List<(string, TensorSlice?)>? loads = null)
    {
        var hf = new HfModelFolder(folder);
        using var source = new RecordingSource(hf);
        var config = hf.Config;
        var spec = LlamaSliceSpec.Whole(config);
        if (group is not null) spec = spec.WithTensorParallel(group.Rank, group.Size, vocabularyParallel: true);
        var model = LlamaLoader.Load(source, config, spec, Options(requiresGrad: false), group);
        loads?.AddRange(source.Loads);
        return model;
    }

    static Tensor FixtureIds() => tensor(HfFixtures.LongRows(HfFixtures.Expected["input_ids"]!).SelectMany(r => r).ToArray(), [2, 12]);

    static float[] FixtureLogits(LlamaSlice model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Values(model.forward(FixtureIds(), AttentionContext.SequentialPositions(2, 12)));
    }

    static Dictionary<string, (TensorParallelPlacement Placement, float[] Values)> Parameters(LlamaSlice model)
    {
        var placements = TensorParallelPlacements.For(model);
        return model.named_parameters().ToDictionary(p => p.name, p => (placements[p.name], Values(p.parameter)));
    }

    static void AssertPartsOf(LlamaSlice full, Dictionary<string, (TensorParallelPlacement Placement, float[] Values)>[] ranks, string what)
    {
        var whole = full.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        long vocab = full.Config.VocabSize, rows = vocab / ranks.Length;
        foreach (var (rank, parameters) in ranks.Select((p, i) => (i, p)))
        {
            Assert.Equal(whole.Keys.Order(), parameters.Keys.Order());
            foreach (var (name, (placement, values)) in parameters)
                AssertBitwiseEqual(Part(whole[name], placement.Slice), values, $"{what}: rank {rank}'s {name}");
            foreach (var name in parameters.Keys.Where(LlamaTensorNames.IsVocabularyTensor))
                Assert.Equal(new TensorSlice(0, rank * rows, rows), parameters[name].Placement.Slice);
        }
    }

    static void AssertLocalLogits(float[] expected, float[][] ranks, double tolerance, string what)
    {
        using var whole = tensor(expected, [2, 12, 256]);
        long width = 256 / ranks.Length;
        foreach (var (rank, logits) in ranks.Select((l, i) => (i, l)))
            AssertClose(Part(whole, new TensorSlice(2, rank * width, width)), logits, tolerance, $"{what}: rank {rank}'s logits");
    }

    [Theory]
    [InlineData("micro-untied")]
    [InlineData("micro-tied")]
    public void Shards_of_a_hugging_face_folder_read_only_their_vocabulary_rows(string name)
    {
        var folder = HfFixtures.Path_(name);
        using var full = LoadFolder(folder);
        var expected = FixtureLogits(full);

        var loads = new List<(string, TensorSlice?)>[2];
        var ranks = TensorParallelRanks.Run(2, group =>
        {
            loads[group.Rank] = [];
            using var shard = LoadFolder(folder, group, loads[group.Rank]);
            return (Parameters: Parameters(shard), Logits: FixtureLogits(shard));
        });
        AssertPartsOf(full, ranks.Select(r => r.Parameters).ToArray(), name);
        AssertLocalLogits(expected, ranks.Select(r => r.Logits).ToArray(), 1e-5, name);
        for (int rank = 0; rank < 2; rank++)
        {
            var rows = new TensorSlice(0, rank * 128, 128);
            // The embedding (and for an untied model the head) read once each, as the rank's rows only.
            Assert.Equal([(LlamaTensorNames.EmbedTokens, (TensorSlice?)rows)], loads[rank].Where(l => l.Item1 == LlamaTensorNames.EmbedTokens));
            Assert.Equal(name == "micro-tied" ? [] : [(LlamaTensorNames.LmHead, (TensorSlice?)rows)], loads[rank].Where(l => l.Item1 == LlamaTensorNames.LmHead));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Initialized_shards_draw_their_rows_of_the_whole_initialization(bool tied)
    {
        var config = VocabularyParallelGradientTests.VocabConfig(tied);
        var initializer = new LlamaInitializer(seed: 5, std: 0.1);
        using var full = initializer.CreateSlice(config, options: Options());
        var group = LocalTensorParallelGroup.Create(4);
        // Building communicates nothing: the ranks can be built one after the other on this thread.
        var ranks = group.Select(member =>
        {
            var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(member.Rank, 4, vocabularyParallel: true);
            using var shard = initializer.CreateSlice(config, spec, Options(), member);
            return Parameters(shard);
        }).ToArray();
        AssertPartsOf(full, ranks, $"initializer, {(tied ? "tied" : "untied")}");
        Assert.All(group, member => Assert.Equal(0, member.Calls));
    }

    [Fact]
    public void Shards_under_a_peft_adapter_compute_pefts_logits_columns()
    {
        var folder = HfFixtures.Path_("micro-untied");
        var adapter = HfFixtures.Path_("micro-untied-lora");
        float[] peft;
        using (var file = new SafeTensorsFile(HfFixtures.Path_("micro-untied-lora.logits.safetensors")))
        using (var logits = file.Load("logits"))
            peft = Values(logits);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = LoadFolder(folder, group);
            PeftAdapter.LoadInto(shard, adapter);
            return FixtureLogits(shard);
        });
        AssertLocalLogits(peft, ranks, 1e-4, "tp 2 vocabulary-parallel logits against PEFT's");
    }

    [Fact]
    public void A_vocabulary_the_split_does_not_divide_is_refused_naming_vocab_size()
    {
        var config = MicroConfig(); // vocab_size 61
        var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(1, 2, vocabularyParallel: true);
        var error = Assert.Throws<ArgumentException>(() => spec.Validate(config));
        Assert.Equal("tensor parallel size 2 does not divide vocab_size = 61: tensor parallelism splits whole attention heads, whole key/value heads and the MLP columns evenly, and a vocabulary-parallel shard splits the vocabulary rows evenly (no padding)", error.Message);
        using var source = Llama.MicroLlama.Source(config);
        Assert.Throws<ArgumentException>(() => LlamaLoader.Load(source, config, spec, Options(), LocalTensorParallelGroup.Create(2)[1]));
        Assert.Empty(source.LoadedNames);
        // The same split without the vocabulary is fine: the embedding and head stay whole.
        LlamaSliceSpec.Whole(config).WithTensorParallel(1, 2).Validate(config);
    }

    [Fact]
    public void Size_one_with_the_option_is_todays_model_bit_for_bit()
    {
        var config = VocabularyParallelGradientTests.VocabConfig(tied: false);
        var single = LocalTensorParallelGroup.Create(1)[0];
        using var today = Full(config);
        using var source = Llama.MicroLlama.Source(config);
        var spec = LlamaSliceSpec.Whole(config).WithTensorParallel(0, 1, vocabularyParallel: true);
        using var sizeOne = LlamaLoader.Load(source, config, spec, Options(), single);

        Assert.True(spec.IsWhole(config));
        Assert.Null(sizeOne.VocabularyParallelGroup);
        Assert.Null(sizeOne.VocabularySlice);
        int[][] rows = [Llama.MicroLlama.RandomTokens(11, 3, 256), Llama.MicroLlama.RandomTokens(11, 4, 256)];
        var a = VocabularyParallelGradientTests.Step(today, rows);
        var b = VocabularyParallelGradientTests.Step(sizeOne, rows);
        AssertBitwiseEqual(a.Logits, b.Logits, "logits");
        Assert.Equal(BitConverter.SingleToInt32Bits(a.Loss), BitConverter.SingleToInt32Bits(b.Loss));
        foreach (var (name, (_, gradient)) in a.Parameters) AssertBitwiseEqual(gradient, b.Parameters[name].Gradient, $"gradient of {name}");
        Assert.Equal(0, single.Calls);
    }

    [Fact]
    public void With_the_option_off_a_split_keeps_the_vocabulary_whole()
    {
        var config = VocabularyParallelGradientTests.VocabConfig(tied: false);
        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = Shard(config, group);
            Assert.Null(shard.VocabularyParallelGroup);
            Assert.Null(shard.VocabularySlice);
            Assert.All(LlamaTensorNames.ForSlice(config, shard.Spec).Where(t => LlamaTensorNames.IsVocabularyTensor(t.Name)), t => Assert.Null(t.Slice));
            using var scope = NewDisposeScope();
            var tokens = Llama.MicroLlama.Rows(Llama.MicroLlama.RandomTokens(11, 3, 256), Llama.MicroLlama.RandomTokens(11, 4, 256));
            var logits = shard.forward(tokens, AttentionContext.SequentialPositions(2, 11));
            Assert.Equal(new long[] { 2, 11, 256 }, logits.shape);
            // The engine's entry point with the slice's (null) vocabulary group is the plain loss.
            Assert.Equal(CausalLmLoss.SumNll(logits, tokens).ToSingle(), CausalLmLoss.SumNll(logits, tokens, shard.VocabularyParallelGroup).ToSingle());
            return TensorParallelPlacements.For(shard);
        });
        foreach (var placements in ranks)
        {
            Assert.False(placements[LlamaTensorNames.EmbedTokens].IsSharded);
            Assert.False(placements[LlamaTensorNames.LmHead].IsSharded);
            Assert.False(placements[LlamaTensorNames.LmHead].IsPrimaryCopy(1));
        }
    }

    [Fact]
    public void Generation_refuses_a_vocabulary_parallel_shard()
    {
        var config = VocabularyParallelGradientTests.VocabConfig(tied: true);
        using var source = Llama.MicroLlama.Source(config);
        // Building communicates nothing, so rank 1 can be built alone.
        using var shard = LlamaLoader.Load(source, config, LlamaSliceSpec.Whole(config).WithTensorParallel(1, 2, vocabularyParallel: true),
            Options(requiresGrad: false), LocalTensorParallelGroup.Create(2)[1]);
        var error = Assert.Throws<ArgumentException>(() => new LlamaGenerator(shard));
        Assert.Contains("vocabulary-parallel shard", error.Message);
    }
}
