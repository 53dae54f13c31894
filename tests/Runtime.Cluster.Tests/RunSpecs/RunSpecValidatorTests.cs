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

    /// <summary>The layout rules as they will apply once tensor parallelism is supported (see the refusal test below).</summary>
    static SpecProblem Single(RunSpec spec, int slots) => Assert.Single(RunSpecValidator.Problems(spec, slots, tensorParallel: true));

    [Fact]
    public void A_good_spec_passes_and_returns_the_model_config()
    {
        var model = RunSpecValidator.Validate(Spec("parallel.tensor=2", "parallel.pipeline=2"), availableSlots: 4, tensorParallel: true);
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
    public void Tensor_parallelism_that_does_not_divide_the_heads_is_refused()
    {
        var three = RunSpecValidator.Problems(Spec("parallel.tensor=3"), 3, tensorParallel: true);
        Assert.All(three, p => Assert.Equal("run.parallel.tensor", p.Key));
        Assert.Equal(2, three.Count); // 3 divides the intermediate size 192, not the 4 heads or the 2 kv heads
        Assert.Contains(three, p => p.Message.Contains("num_attention_heads (4)"));
        Assert.Contains(three, p => p.Message.Contains("num_key_value_heads (2)"));

        var four = Single(Spec("parallel.tensor=4"), 4); // divides 4 heads and 192, not the 2 kv heads
        Assert.Equal("run.parallel.tensor = 4 does not divide the model's num_key_value_heads (2); tensor-parallel ranks split it evenly", four.Message);
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
        var e = Assert.Throws<RunSpecException>(() => RunSpecValidator.Validate(spec, 2, tensorParallel: true));
        Assert.Equal(["run.data.path", "run.parallel.pipeline", "run.parallel.tensor", "run.parallel"], e.Problems.Select(p => p.Key));
    }

    [Fact]
    public void Tensor_parallelism_is_refused_while_the_model_cannot_be_split_by_rank()
    {
        var p = Assert.Single(RunSpecValidator.Problems(Spec("parallel.tensor=2"), 2));
        Assert.Equal("run.parallel.tensor", p.Key);
        Assert.StartsWith("run.parallel.tensor = 2: tensor parallelism is not supported yet", p.Message);
        Assert.Empty(RunSpecValidator.Problems(Spec("parallel.tensor=1"), 1));
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
