using Runtime.Cluster.Configuration;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Training.Optim;
using Runtime.Training.Planning;

namespace Runtime.Cluster.Tests.RunSpecs;

public class RunSpecParserTests
{
    /// <summary>The run block as the issue writes it, verbatim.</summary>
    public const string IssueExample = """
        run {
          name = "quickstart"
          model = "path/to/hf-model"            # or a 4-bit folder from rt quantize
          method = lora                          # lora | qlora | full
          lora { r = 16, alpha = 32, dropout = 0.05, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
          data { path = "data/train.jsonl", max-seq-length = 4096, packing = on }
          train { micro-batch-size = 2, grad-accum = 16, epochs = 3, max-steps = -1, lr = 2e-4, schedule = cosine,
                  warmup-ratio = 0.03, weight-decay = 0.01, max-grad-norm = 1.0, precision = bf16,
                  grad-checkpointing = on, seed = 42 }
          parallel { data = 1, pipeline = 1, tensor = 1, schedule = 1f1b }
          checkpoint { every-steps = 500, keep = 3 }
          log { every-steps = 10, tensorboard = on }
          output = "runs/quickstart"
        }
        """;

    static readonly string Base = Path.Combine(Path.GetTempPath(), "specs");

    static RunSpec Parse(string text, params string[] sets) => RunSpecParser.Parse(text, "test.conf", Base, sets);

    static SpecProblem Refused(string text, params string[] sets)
    {
        var e = Assert.Throws<RunSpecException>(() => Parse(text, sets));
        return Assert.Single(e.Problems);
    }

    [Fact]
    public void The_issue_example_parses_to_its_values()
    {
        var spec = Parse(IssueExample);
        Assert.Equal("quickstart", spec.Name);
        Assert.Equal(Path.Combine(Base, "path", "to", "hf-model"), spec.Model);
        Assert.Equal(FineTuneMethod.Lora, spec.Method);
        Assert.Equal(new LoraSpec(16, 32, 0.05, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]), spec.Lora);
        Assert.Equal(new DataSpec(Path.Combine(Base, "data", "train.jsonl"), 4096, true), spec.Data);
        Assert.Equal(new TrainSpec(2, 16, 3, -1, 2e-4, LrScheduleKind.Cosine, 0.03, 0.01, 1.0, ComputePrecision.Bf16, true, 42), spec.Train);
        Assert.Equal(new ParallelSpec(1, 1, 1, PipelineSchedule.OneFOneB), spec.Parallel);
        Assert.Equal(new CheckpointSpec(500, 3), spec.Checkpoint);
        Assert.Equal(new LogSpec(10, true), spec.Log);
        Assert.Equal(Path.Combine(Base, "runs", "quickstart"), spec.Output);
        Assert.Equal(32, spec.SamplesPerStep); // 2 x 16 x 1
    }

    [Fact]
    public void Absent_keys_take_the_example_defaults()
    {
        var full = Parse(IssueExample);
        var minimal = Parse("""run { name = "quickstart", model = "path/to/hf-model", data { path = "data/train.jsonl" }, output = "runs/quickstart" }""");
        Assert.Equal(full, minimal);
        Assert.Equal(new QloraSpec("nf4", true), minimal.Qlora);
    }

    [Fact]
    public void Samples_per_step_follow_the_hugging_face_arithmetic()
    {
        var spec = Parse(IssueExample, "parallel.data=4");
        Assert.Equal(2L * 16 * 4, spec.SamplesPerStep);
    }

    [Fact]
    public void Name_and_output_default_from_the_file()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["my-run.conf"], "run { model = \"m\", data.path = \"d.jsonl\" }");
        var spec = RunSpecParser.Load(dir["my-run.conf"]);
        Assert.Equal("my-run", spec.Name);
        Assert.Equal(dir["runs/my-run"], spec.Output);
        Assert.Equal(dir["m"], spec.Model);
        Assert.Equal(dir["d.jsonl"], spec.Data.Path);
    }

    [Fact]
    public void Set_overrides_replace_values_lists_and_sections()
    {
        var spec = Parse(IssueExample, "train.lr=1e-3", "lora.targets=[q_proj, v_proj]", "parallel.schedule=gpipe", "data.packing=off", "method=qlora",
            "parallel.vocab-parallel=on");
        Assert.Equal(1e-3, spec.Train.Lr);
        Assert.True(spec.Parallel.VocabParallel);
        Assert.Equal(["q_proj", "v_proj"], spec.Lora.Targets);
        Assert.Equal(PipelineSchedule.GPipe, spec.Parallel.Schedule);
        Assert.False(spec.Data.Packing);
        Assert.Equal(FineTuneMethod.Qlora, spec.Method);
        Assert.Equal(16, spec.Lora.R); // untouched keys keep the file's values
    }

    [Fact]
    public void The_last_set_of_a_key_wins()
    {
        Assert.Equal(5e-5, Parse(IssueExample, "train.lr=1e-3", "train.lr=5e-5").Train.Lr);
    }

    [Fact]
    public void Paths_from_set_are_relative_to_the_working_directory_not_the_spec()
    {
        var spec = Parse(IssueExample, "model=other/model", "data.path=/abs/data.jsonl");
        Assert.Equal(Path.GetFullPath("other/model"), spec.Model);
        Assert.Equal("/abs/data.jsonl", spec.Data.Path);
        Assert.Equal(Path.Combine(Base, "runs", "quickstart"), spec.Output); // from the file: relative to the spec
    }

    [Fact]
    public void A_set_value_that_is_not_hocon_is_taken_as_a_string()
    {
        Assert.Equal("/models/a:b", Parse(IssueExample, "model=/models/a:b").Model);
    }

    [Theory]
    [InlineData("train.lerning-rate", "run.train.lerning-rate is not a known key")]
    [InlineData("lora.rank", "run.lora.rank is not a known key")]
    [InlineData("epochs", "run.epochs is not a known key")]
    public void Unknown_keys_from_set_are_refused_naming_the_full_key(string key, string message)
    {
        var p = Refused(IssueExample, $"{key}=1");
        Assert.Equal("run." + key, p.Key);
        Assert.Equal(message, p.Message);
    }

    [Fact]
    public void Unknown_keys_in_the_file_are_refused_naming_the_full_key()
    {
        var p = Refused(IssueExample.Replace("lr = 2e-4", "lerning-rate = 2e-4"));
        Assert.Equal("run.train.lerning-rate", p.Key);
        Assert.Equal("run.train.lerning-rate is not a known key", p.Message);
    }

    [Fact]
    public void Keys_outside_the_run_block_are_refused()
    {
        var p = Refused(IssueExample + "\ntrain { lr = 1 }");
        Assert.Equal("train", p.Key);
    }

    [Fact]
    public void Every_problem_is_reported_at_once()
    {
        var e = Assert.Throws<RunSpecException>(() => Parse(IssueExample, "train.lr=-1", "parallel.tensor=0", "log.color=on"));
        Assert.Equal(["run.log.color", "run.train.lr", "run.parallel.tensor"], e.Problems.Select(p => p.Key));
        Assert.Contains("run.train.lr must be > 0 (got -1)", e.Message);
    }

    [Theory]
    [InlineData("train.lr=fast", "run.train.lr", "must be a number")]
    [InlineData("train.micro-batch-size=2.5", "run.train.micro-batch-size", "must be a whole number")]
    [InlineData("train.max-steps=0", "run.train.max-steps", "-1")]
    [InlineData("train.max-steps=-2", "run.train.max-steps", "at least -1")]
    [InlineData("train.warmup-ratio=1.5", "run.train.warmup-ratio", "in [0, 1]")]
    [InlineData("train.precision=fp16", "run.train.precision", "bf16 | fp32")]
    [InlineData("train.schedule=step", "run.train.schedule", "cosine | linear | constant")]
    [InlineData("method=dora", "run.method", "lora | qlora | full")]
    [InlineData("parallel.schedule=zb", "run.parallel.schedule", "1f1b | gpipe")]
    [InlineData("parallel.data=0", "run.parallel.data", "at least 1")]
    [InlineData("data.packing=maybe", "run.data.packing", "on or off")]
    [InlineData("parallel.vocab-parallel=2", "run.parallel.vocab-parallel", "on or off")]
    [InlineData("admission.force=please", "run.admission.force", "on or off")]
    [InlineData("data.max-seq-length=1", "run.data.max-seq-length", "at least 2")]
    [InlineData("lora.dropout=1", "run.lora.dropout", "in [0, 1)")]
    [InlineData("lora.targets=[q_proj, lm_head]", "run.lora.targets", "\"lm_head\" is not a Llama projection")]
    [InlineData("lora.targets=[q_proj, q_proj]", "run.lora.targets", "lists q_proj twice")]
    [InlineData("lora.targets=q_proj", "run.lora.targets", "must be a list")]
    [InlineData("lora.targets=[]", "run.lora.targets", "is empty")]
    [InlineData("qlora.quant-type=fp4", "run.qlora.quant-type", "nf4")]
    [InlineData("checkpoint.keep=0", "run.checkpoint.keep", "at least 1")]
    [InlineData("name=\"bad name\"", "run.name", "must be 1 to 64 characters")]
    public void Bad_values_are_refused_naming_the_key(string set, string key, string fragment)
    {
        var e = Assert.Throws<RunSpecException>(() => Parse(IssueExample, set));
        var p = e.Problems.First(q => q.Key == key);
        Assert.Contains(fragment, p.Message);
        Assert.StartsWith(key, p.Message);
    }

    [Fact]
    public void A_section_given_as_a_value_is_refused_once()
    {
        var p = Refused(IssueExample, "lora=5");
        Assert.Equal("run.lora", p.Key);
        Assert.Equal("run.lora must be an object (run.lora { ... })", p.Message);
    }

    [Fact]
    public void Missing_model_and_data_are_refused_naming_the_keys()
    {
        var e = Assert.Throws<RunSpecException>(() => Parse("run { name = \"x\" }"));
        Assert.Equal(["run.model", "run.data.path"], e.Problems.Select(p => p.Key));
        Assert.Equal("run.model is required (a Hugging Face model folder, or a 4-bit folder from rt quantize)", e.Problems[0].Message);
    }

    [Theory]
    [InlineData("model")]
    [InlineData("train")]
    [InlineData("=1")]
    [InlineData("run.train.lr=1")]
    public void Malformed_set_is_refused(string set)
    {
        var e = Assert.Throws<RunSpecException>(() => Parse(IssueExample, set));
        Assert.Equal("--set", e.Problems.Single().Key);
    }

    [Fact]
    public void Hocon_syntax_errors_name_the_file_and_line()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["bad.conf"], "run {\n  name = \"x\"\n  lora { r = 8 \n}\n");
        var e = Assert.Throws<HoconException>(() => RunSpecParser.Load(dir["bad.conf"]));
        Assert.Equal($"{dir["bad.conf"]}:1: '{{' is never closed", e.Message);
    }
}
