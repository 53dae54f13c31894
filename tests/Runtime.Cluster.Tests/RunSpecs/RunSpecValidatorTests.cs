using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;

namespace Runtime.Cluster.Tests.RunSpecs;

/// <summary>Specs that parse but must be refused before anything starts, each naming the key to change.</summary>
public class RunSpecValidatorTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The tiny preset: 4 layers, 4 attention heads, 2 key/value heads, intermediate 192.</summary>
    RunSpec Spec(params string[] sets)
    {
        Fixtures.Model(_dir["tiny"], LlamaPresets.Tiny);
        Fixtures.Data(_dir["data/train.jsonl"]);
        var text = $"run {{ name = \"t\", model = \"tiny\", data.path = \"data/train.jsonl\" }}";
        return RunSpecParser.Parse(text, "t.conf", _dir.Path, sets);
    }

    static SpecProblem Single(RunSpec spec, int slots) => Assert.Single(RunSpecValidator.Problems(spec, slots));

    [Fact]
    public void A_good_spec_passes_and_returns_the_model_config()
    {
        var model = RunSpecValidator.Validate(Spec("parallel.tensor=2", "parallel.pipeline=2"), availableSlots: 4);
        Assert.Equal((4, 4, 2, 192), (model.NumHiddenLayers, model.NumAttentionHeads, model.NumKeyValueHeads, model.IntermediateSize));
    }

    [Fact]
    public void Missing_model_folder_is_refused()
    {
        var p = Single(Spec() with { Model = _dir["nope"] }, 1);
        Assert.Equal("run.model", p.Key);
        Assert.Equal($"run.model: {_dir["nope"]} does not exist", p.Message);
    }

    [Fact]
    public void Model_folder_without_config_json_is_refused()
    {
        Directory.CreateDirectory(_dir["empty"]);
        var p = Single(Spec() with { Model = _dir["empty"] }, 1);
        Assert.Equal("run.model", p.Key);
        Assert.Contains("has no config.json", p.Message);
    }

    [Fact]
    public void Unreadable_config_json_is_refused_with_the_model_loader_message()
    {
        Directory.CreateDirectory(_dir["broken"]);
        File.WriteAllText(_dir["broken/config.json"], "{\"hidden_size\": 64}");
        var p = Single(Spec() with { Model = _dir["broken"] }, 1);
        Assert.Equal("run.model", p.Key);
        Assert.StartsWith($"run.model: {_dir["broken/config.json"]}: missing required key", p.Message);
    }

    [Fact]
    public void A_4bit_folder_needs_qlora()
    {
        Fixtures.Model(_dir["tiny-4bit"], LlamaPresets.Tiny, "\"quantization_config\": {\"quant_method\": \"bitsandbytes\"}");
        var spec = Spec() with { Model = _dir["tiny-4bit"] };
        var p = Single(spec, 1);
        Assert.Equal("run.method", p.Key);
        Assert.Contains("use method = qlora", p.Message);
        Assert.Empty(RunSpecValidator.Problems(spec with { Method = Runtime.Training.Planning.FineTuneMethod.Qlora }, 1));
    }

    [Fact]
    public void Missing_data_file_is_refused()
    {
        var p = Single(Spec("data.path=" + _dir["nope.jsonl"]), 1);
        Assert.Equal("run.data.path", p.Key);
        Assert.Equal($"run.data.path: {_dir["nope.jsonl"]} does not exist", p.Message);
    }

    [Fact]
    public void More_pipeline_stages_than_layers_is_refused()
    {
        var p = Single(Spec("parallel.pipeline=5"), 5);
        Assert.Equal("run.parallel.pipeline", p.Key);
        Assert.Equal("run.parallel.pipeline = 5 exceeds the model's 4 layers (num_hidden_layers); every stage needs a layer", p.Message);
        Assert.Empty(RunSpecValidator.Problems(Spec("parallel.pipeline=3"), 3)); // 4 layers over 3 stages
    }

    [Fact]
    public void Tensor_parallelism_that_does_not_divide_the_heads_is_refused_with_the_models_reason()
    {
        // 3 divides the intermediate size 192, not the 4 heads or the 2 kv heads: one problem naming both.
        var three = Single(Spec("parallel.tensor=3"), 3);
        Assert.Equal("run.parallel.tensor", three.Key);
        Assert.StartsWith("run.parallel.tensor = 3: tensor parallel size 3 does not divide num_attention_heads = 4 and num_key_value_heads = 2:", three.Message);
        Assert.DoesNotContain("intermediate_size", three.Message);

        var four = Single(Spec("parallel.tensor=4"), 4); // divides 4 heads and 192, not the 2 kv heads
        Assert.StartsWith("run.parallel.tensor = 4: tensor parallel size 4 does not divide num_key_value_heads = 2:", four.Message);
    }

    [Fact]
    public void Tensor_parallelism_that_divides_the_model_is_accepted_and_a_vocabulary_split_needs_the_vocabulary_divided()
    {
        Assert.Empty(RunSpecValidator.Problems(Spec("parallel.tensor=2"), 2));
        Assert.Empty(RunSpecValidator.Problems(Spec("parallel.tensor=2", "parallel.vocab-parallel=on"), 2)); // 128256 rows
        Assert.Empty(RunSpecValidator.Problems(Spec("parallel.vocab-parallel=on"), 1)); // nothing to split

        Fixtures.Model(_dir["odd-vocab"], LlamaPresets.Tiny with { VocabSize = 251 });
        var odd = Spec("parallel.tensor=2", "parallel.vocab-parallel=on") with { Model = _dir["odd-vocab"] };
        var p = Single(odd, 2);
        Assert.Equal("run.parallel.vocab-parallel", p.Key);
        Assert.StartsWith("run.parallel.vocab-parallel = on with tensor = 2: tensor parallel size 2 does not divide vocab_size = 251:", p.Message);
        Assert.EndsWith("use vocab-parallel = off", p.Message);
        Assert.Empty(RunSpecValidator.Problems(odd with { Parallel = odd.Parallel with { VocabParallel = false } }, 2));

        // Heads not divided as well: the split itself is refused first (turning the vocabulary split off would not help).
        var both = Single(odd with { Parallel = odd.Parallel with { Tensor = 3 } }, 3);
        Assert.Equal("run.parallel.tensor", both.Key);
    }

    [Fact]
    public void More_workers_than_slots_is_refused()
    {
        var p = Single(Spec("parallel.data=2", "parallel.tensor=2"), 3);
        Assert.Equal("run.parallel", p.Key);
        Assert.Equal("run.parallel: data 2 x pipeline 1 x tensor 2 = 4 workers need 4 slots; 3 available", p.Message);
    }

    [Fact]
    public void Validate_throws_with_every_problem()
    {
        var spec = Spec("parallel.pipeline=8", "parallel.tensor=4") with { Data = Spec().Data with { Path = _dir["gone.jsonl"] } };
        var e = Assert.Throws<RunSpecException>(() => RunSpecValidator.Validate(spec, 2));
        Assert.Equal(["run.data.path", "run.parallel.pipeline", "run.parallel.tensor", "run.parallel"], e.Problems.Select(p => p.Key));
    }

    [Fact]
    public void Full_fine_tuning_of_tied_embeddings_across_pipeline_stages_is_refused()
    {
        var spec = Spec("parallel.pipeline=2", "method=full"); // the tiny preset ties them
        var p = Single(spec, 2);
        Assert.Equal("run.parallel.pipeline", p.Key);
        Assert.Contains("ties its embedding and LM head", p.Message);
        Fixtures.Model(_dir["untied"], LlamaPresets.Tiny with { TieWordEmbeddings = false });
        Assert.Empty(RunSpecValidator.Problems(spec with { Model = _dir["untied"] }, 2));
        Assert.Empty(RunSpecValidator.Problems(spec with { Method = Runtime.Training.Planning.FineTuneMethod.Lora }, 2));
        Assert.Empty(RunSpecValidator.Problems(Spec("method=full"), 1));
    }
}
