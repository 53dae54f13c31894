using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Tests.RunSpecs;

public class RunSpecHoconTests
{
    static RunSpec Example(params string[] sets) =>
        RunSpecParser.Parse(RunSpecParserTests.IssueExample, "test.conf", Path.Combine(Path.GetTempPath(), "specs"), sets);

    [Fact]
    public void Canonical_text_parses_back_to_the_same_spec()
    {
        var spec = Example("train.lr=1.3e-5", "lora.dropout=0.1", "train.warmup-ratio=0.30000000000000004", "method=full",
            "lora.targets=[v_proj, q_proj]", "train.max-steps=1000", "train.seed=123456789012", "parallel.tensor=2", "parallel.vocab-parallel=on");
        var text = RunSpecHocon.Write(spec);
        Assert.Equal(spec, RunSpecParser.ParseCanonical(text));
        Assert.True(spec.Parallel.VocabParallel);
        // A spec stored before vocab-parallel existed reads as off.
        var older = text.Replace(", vocab-parallel = on", "");
        Assert.Equal(spec with { Parallel = spec.Parallel with { VocabParallel = false } }, RunSpecParser.ParseCanonical(older));
    }

    [Fact]
    public void A_forced_admission_is_written_and_read_back_and_an_unforced_one_leaves_the_text_as_it_was()
    {
        var plain = Example();
        var forced = Example("admission.force=on");
        Assert.False(plain.Admission.Force);
        Assert.True(forced.Admission.Force);
        var text = RunSpecHocon.Write(forced);
        Assert.Contains("  admission { force = on }\n", text);
        Assert.Equal(forced, RunSpecParser.ParseCanonical(text));
        // Specs that are not forced keep the text they had before the key existed (journals, checkpoints' training hash).
        Assert.DoesNotContain("admission", RunSpecHocon.Write(plain));
        Assert.Equal(RunSpecHocon.Write(plain), text.Replace("  admission { force = on }\n", ""));
        // How a run was admitted is not what it trains: a forced run's checkpoints resume unforced, and back.
        Assert.Equal(Runtime.Cluster.Driving.RunRecipe.TrainingSha256(plain), Runtime.Cluster.Driving.RunRecipe.TrainingSha256(forced));
    }

    [Fact]
    public void Canonical_text_keeps_awkward_paths_exactly()
    {
        var spec = Example() with { Model = "/models/with space/and \"quotes\" and \\ back", Output = "/runs/a#b/c d/e" };
        Assert.Equal(spec, RunSpecParser.ParseCanonical(RunSpecHocon.Write(spec)));
    }

    [Fact]
    public void Canonical_text_is_deterministic_and_independent_of_how_the_spec_was_written()
    {
        var a = Example("train.lr=0.0002");
        var b = Example();
        Assert.Equal(RunSpecHocon.Write(a), RunSpecHocon.Write(b));
        var text = RunSpecHocon.Write(b);
        Assert.Contains("  train { micro-batch-size = 2, grad-accum = 16, epochs = 3, max-steps = -1, lr = 0.0002, schedule = cosine, ", text);
        Assert.Contains("  parallel { data = 1, pipeline = 1, tensor = 1, schedule = 1f1b, vocab-parallel = off }\n", text);
        Assert.StartsWith("run {\n  name = \"quickstart\"\n", text);
    }
}
