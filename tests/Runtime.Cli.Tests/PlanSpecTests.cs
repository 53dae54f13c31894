using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Runtime.Cli.Commands;
using Runtime.Model.Config;

namespace Runtime.Cli.Tests;

/// <summary>`rt plan --spec`: a run spec planned as the flags that describe the same run plan it.</summary>
public class PlanSpecTests
{
    static readonly string Root = CliFixtures.RepositoryRoot();

    static string Spec(string file) => Path.Combine(Root, "hocon", "runs", file);

    /// <summary>The fields that hold the fewest GPUs: a spec fixes its layout, so its minimum is searched without it.</summary>
    static readonly string[] MinimumFields = ["min_gpus", "min_nodes", "min_gpus_layout"];

    static JsonObject Json(string stdout, params string[] without)
    {
        var o = JsonNode.Parse(stdout)!.AsObject();
        foreach (var key in without) Assert.True(o.Remove(key), $"the plan has no {key}");
        return o;
    }

    /// <summary>
    /// Each 405B spec and the flags written out by hand from its run block (method, r, dropout, the default targets
    /// of all seven projections, bf16, micro-batch 2, 4096 packed, recompute, grad-accum 16 as micro-batches, 1f1b,
    /// the parallel block).
    /// </summary>
    public static TheoryData<string, string> SpecsAndTheirFlags() => new()
    {
        { "llama3.1-405b-qlora-b200.conf", "--method qlora --tp 4 --pp 1 --dp 2" },
        { "llama3.1-405b-lora-b200.conf", "--method lora --tp 8 --pp 1 --dp 1 --vocab-parallel" },
        { "llama3.1-405b-full-b200.conf", "--method full --tp 8 --pp 8 --dp 1 --vocab-parallel" },
    };

    const string RecipeFlags = "--model llama3.1-405b --gpu b200 --lora-rank 16 --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj " +
                               "--lora-dropout 0.05 --precision bf16 --micro-batch-size 2 --seq-len 4096 --packing " +
                               "--gradient-checkpointing true --micro-batches 16 --schedule 1f1b";

    [Theory]
    [MemberData(nameof(SpecsAndTheirFlags))]
    public void A_spec_plans_as_the_flags_of_its_run_block(string file, string layoutFlags)
    {
        var bySpec = Rt.Invoke("plan", "--spec", Spec(file), "--model", "llama3.1-405b", "--json");
        var byFlags = Rt.Invoke(["plan", .. (RecipeFlags + " " + layoutFlags).Split(' '), "--json"]);
        Assert.Equal(("", ""), (bySpec.Err, byFlags.Err));
        Assert.Equal(byFlags.Exit, bySpec.Exit);
        Assert.Equal(PlanCommand.ExitFits, bySpec.Exit);
        var spec = Json(bySpec.Out, MinimumFields);
        var flags = Json(byFlags.Out, MinimumFields);
        Assert.True(JsonNode.DeepEquals(flags, spec), $"--spec {file}:\n{spec}\nflags:\n{flags}");

        // The fewest GPUs is the same recipe searched over every layout: the flags without --tp/--pp/--dp.
        var searched = Rt.Invoke(["plan", .. (RecipeFlags + " " + Regex.Replace(layoutFlags, @"--(tp|pp|dp) \d+ ?", "")).Split(' ', StringSplitOptions.RemoveEmptyEntries), "--json"]);
        var min = JsonNode.Parse(searched.Out)!;
        var specMin = JsonNode.Parse(bySpec.Out)!;
        foreach (var key in MinimumFields)
            Assert.True(JsonNode.DeepEquals(min[key], specMin[key]), $"{key}: {specMin[key]} (spec) vs {min[key]} (searched)");
    }

    [Fact]
    public void The_table_says_when_the_vocabulary_is_split()
    {
        var split = Rt.Invoke("plan", "--spec", Spec("llama3.1-405b-lora-b200.conf"), "--model", "llama3.1-405b");
        Assert.Contains("Layout: tp 8 x pp 1 x dp 1, vocabulary split over tp = 8 GPUs", split.Out);
        var whole = Rt.Invoke("plan", "--spec", Spec("llama3.1-405b-qlora-b200.conf"), "--model", "llama3.1-405b");
        Assert.Contains("Layout: tp 4 x pp 1 x dp 2 = 8 GPUs", whole.Out);
    }

    [Theory]
    [InlineData("--tp", "8", "parallel.tensor")]
    [InlineData("--method", "full", "method")]
    [InlineData("--seq-len", "2048", "data.max-seq-length")]
    [InlineData("--micro-batches", "4", "train.grad-accum")]
    [InlineData("--vocab-parallel", null, "parallel.vocab-parallel")]
    [InlineData("--gradient-checkpointing", "false", "train.grad-checkpointing")]
    public void Flags_the_spec_decides_are_refused_naming_the_key_to_set(string flag, string? value, string key)
    {
        string[] extra = value is null ? [flag] : [flag, value];
        var (exit, stdout, stderr) = Rt.Invoke(["plan", "--spec", Spec("llama3.1-405b-qlora-b200.conf"), "--model", "llama3.1-405b", .. extra]);
        Assert.Equal(PlanCommand.ExitError, exit);
        Assert.Equal("", stdout);
        Assert.Contains($"{flag} comes from the spec's run.{key}", stderr);
        Assert.Contains($"--set {key}=", stderr);
    }

    [Fact]
    public void Set_overrides_the_spec_and_a_layout_over_budget_exits_2()
    {
        var (exit, stdout, stderr) = Rt.Invoke("plan", "--spec", Spec("llama3.1-405b-lora-b200.conf"), "--model", "llama3.1-405b",
            "--set", "parallel.tensor=2", "--set", "parallel.data=4", "--json");
        Assert.Equal("", stderr);
        Assert.Equal(PlanCommand.ExitDoesNotFit, exit); // 810 GB of bf16 weights over 2 ranks
        var layout = JsonNode.Parse(stdout)!["layout"]!;
        Assert.Equal((2, 1, 4, true), ((int)layout["tp"]!, (int)layout["pp"]!, (int)layout["dp"]!, (bool)layout["vocab_parallel"]!));
    }

    [Fact]
    public void A_layout_the_model_cannot_split_is_refused_by_its_key()
    {
        var (exit, _, stderr) = Rt.Invoke("plan", "--spec", Spec("llama3.1-405b-qlora-b200.conf"), "--model", "llama3.1-405b", "--set", "parallel.tensor=3");
        Assert.Equal(PlanCommand.ExitError, exit);
        Assert.Contains("run.parallel.tensor = 3", stderr);
    }

    [Fact]
    public void A_spec_whose_model_folder_is_elsewhere_asks_for_model()
    {
        var (exit, stdout, stderr) = Rt.Invoke("plan", "--spec", Spec("llama3.1-405b-qlora-b200.conf"));
        Assert.Equal(PlanCommand.ExitError, exit);
        Assert.Equal("", stdout);
        Assert.Contains("/models/Llama-3.1-405B-Instruct does not exist here", stderr);
        Assert.Contains("--model", stderr);
    }

    [Fact]
    public void A_spec_whose_model_folder_exists_is_planned_from_its_config()
    {
        using var scratch = new ScratchFolder();
        Directory.CreateDirectory(scratch["tiny"]);
        File.WriteAllText(Path.Combine(scratch["tiny"], "config.json"), LlamaPresets.Tiny.ToJson());
        File.WriteAllText(scratch["run.conf"], """
            run {
              model = "tiny"
              method = lora
              data { path = "absent.jsonl", max-seq-length = 256, packing = off }
              train { micro-batch-size = 4, grad-accum = 2, precision = fp32 }
            }
            """);
        var fromFolder = Rt.Invoke("plan", "--spec", scratch["run.conf"], "--gpu", "h100-80", "--json");
        var fromPreset = Rt.Invoke("plan", "--spec", scratch["run.conf"], "--model", "tiny", "--gpu", "h100-80", "--json");
        Assert.Equal((PlanCommand.ExitFits, ""), (fromFolder.Exit, fromFolder.Err));
        // The model's name is the folder in one and the preset in the other; the sizes are the same.
        Assert.True(JsonNode.DeepEquals(Json(fromPreset.Out, "model"), Json(fromFolder.Out, "model")));
        Assert.Equal(Path.Combine(scratch.Path, "tiny"), (string)JsonNode.Parse(fromFolder.Out)!["model"]!);
    }

    [Fact]
    public void Set_without_spec_and_neither_model_nor_spec_are_refused()
    {
        var set = Rt.Invoke("plan", "--model", "llama3.1-8b", "--set", "parallel.tensor=2");
        Assert.Equal(PlanCommand.ExitError, set.Exit);
        Assert.Contains("--set overrides keys of a run spec", set.Err);
        var neither = Rt.Invoke("plan", "--method", "lora");
        Assert.Equal(PlanCommand.ExitError, neither.Exit);
        Assert.Contains("--model PRESET|DIR, or a run spec: --spec FILE.conf", neither.Err);
    }

    /// <summary>Every spec in hocon/runs, by file name.</summary>
    public static TheoryData<string> ShippedSpecs() =>
        new(Directory.GetFiles(Path.Combine(Root, "hocon", "runs"), "*.conf").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal));

    /// <summary>
    /// A spec's header shows `rt plan --spec ...` and what it "gives": that command, run as written (from the
    /// repository root), fits and prints the per-GPU total the header states.
    /// </summary>
    [Theory]
    [MemberData(nameof(ShippedSpecs))]
    public void The_plan_command_in_each_spec_header_gives_what_the_header_says(string file)
    {
        var header = File.ReadLines(Spec(file)).TakeWhile(l => l.StartsWith('#')).Select(l => l.TrimStart('#').Trim()).ToList();
        int at = header.FindIndex(l => l.StartsWith("rt plan --spec ", StringComparison.Ordinal));
        Assert.True(at >= 0, $"{file}: its header comment has no `rt plan --spec` command");
        var args = header[at].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..];
        int spec = Array.IndexOf(args, "--spec") + 1;
        Assert.Equal("hocon/runs/" + file, args[spec]);
        args[spec] = Path.Combine(Root, args[spec]);
        var gives = Regex.Match(header.ElementAtOrDefault(at + 1) ?? "", @"^gives (\d+\.\d) GB per GPU");
        Assert.True(gives.Success, $"{file}: the line after the command does not say what it gives: '{header.ElementAtOrDefault(at + 1)}'");

        var (exit, stdout, stderr) = Rt.Invoke(args);
        Assert.Equal((PlanCommand.ExitFits, ""), (exit, stderr));
        var total = Regex.Match(stdout, @"^  total\s+(\d+\.\d)\s", RegexOptions.Multiline);
        Assert.True(total.Success, stdout);
        Assert.Equal(gives.Groups[1].Value, total.Groups[1].Value);
    }
}
