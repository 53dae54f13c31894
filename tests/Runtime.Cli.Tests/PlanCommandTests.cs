using System.CommandLine;
using System.Text.Json;
using Runtime.Cli;
using Runtime.Cli.Commands;
using Runtime.Model.Config;

namespace Runtime.Cli.Tests;

public class PlanCommandTests
{
    /// <summary>Runs `plan` the way `rt` does, capturing what it writes.</summary>
    static (int Exit, string Out, string Err) Plan(params string[] args)
    {
        var root = new RootCommand("rt");
        root.Subcommands.Add(PlanCommand.Create());
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(["plan", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    [Fact]
    public void Qlora_405b_on_a_b200_node_fits_and_prints_json()
    {
        var (exit, stdout, stderr) = Plan("--model", "llama3.1-405b", "--method", "qlora", "--gpu", "b200", "--gpus", "8", "--json");
        Assert.Equal(PlanCommand.ExitFits, exit);
        Assert.Equal("", stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("fits").GetBoolean());
        Assert.Equal(405_853_388_800, root.GetProperty("parameters").GetInt64());
        Assert.Equal(8, root.GetProperty("gpus").GetInt32());
        Assert.Equal("qlora", root.GetProperty("method").GetString());
        var perGpu = root.GetProperty("per_gpu");
        Assert.True(perGpu.GetProperty("total_bytes").GetInt64() <= root.GetProperty("budget_bytes").GetInt64());
        Assert.True(perGpu.GetProperty("total_bytes").GetInt64() < perGpu.GetProperty("capacity_bytes").GetInt64());
        Assert.NotEqual(0, root.GetProperty("layouts").GetArrayLength());
    }

    [Fact]
    public void Full_405b_on_8_b200_does_not_fit_exits_2_and_still_prints_the_plan()
    {
        var (exit, stdout, _) = Plan("--model", "llama3.1-405b", "--method", "full", "--gpus", "8", "--json");
        Assert.Equal(PlanCommand.ExitDoesNotFit, exit);
        using var doc = JsonDocument.Parse(stdout);
        Assert.False(doc.RootElement.GetProperty("fits").GetBoolean());
        Assert.True(doc.RootElement.GetProperty("min_gpus").GetInt32() > 8);

        var table = Plan("--model", "llama3.1-405b", "--method", "full", "--gpus", "8");
        Assert.Equal(PlanCommand.ExitDoesNotFit, table.Exit);
        Assert.Contains("fits: NO", table.Out);
        Assert.Contains("Fewest GPUs that fit:", table.Out);
    }

    [Fact]
    public void Table_names_every_category()
    {
        var (exit, stdout, _) = Plan("--model", "llama3.1-8b", "--method", "lora", "--gpu", "h100-80", "--gpus", "1");
        Assert.Equal(PlanCommand.ExitFits, exit);
        foreach (var row in new[] { "frozen weights", "trainable weights", "gradients", "optimizer state", "activations",
                                    "communication buffers", "fragmentation + runtime reserve", "total", "capacity", "per layer per token" })
            Assert.Contains(row, stdout);
    }

    [Fact]
    public void Explicit_layout_is_used_as_given()
    {
        var (exit, stdout, _) = Plan("--model", "llama3.1-70b", "--method", "lora", "--tp", "4", "--pp", "2", "--dp", "1", "--json");
        Assert.Equal(PlanCommand.ExitFits, exit);
        using var doc = JsonDocument.Parse(stdout);
        var layout = doc.RootElement.GetProperty("layout");
        Assert.Equal((4, 2, 1, "given"), (layout.GetProperty("tp").GetInt32(), layout.GetProperty("pp").GetInt32(),
            layout.GetProperty("dp").GetInt32(), layout.GetProperty("chosen_by").GetString()));
        Assert.Equal(2, doc.RootElement.GetProperty("stages").GetArrayLength());
    }

    [Fact]
    public void Gradient_checkpointing_false_keeps_every_activation()
    {
        static JsonElement PerGpu(string stdout) => JsonDocument.Parse(stdout).RootElement.GetProperty("per_gpu");
        var on = PerGpu(Plan("--model", "llama3.1-8b", "--gpus", "1", "--json").Out);
        var off = PerGpu(Plan("--model", "llama3.1-8b", "--gpus", "1", "--json", "--gradient-checkpointing", "false").Out);
        Assert.Equal(on.GetProperty("activations_with_recompute_bytes").GetInt64(), on.GetProperty("activations_bytes").GetInt64());
        Assert.Equal(on.GetProperty("activations_without_recompute_bytes").GetInt64(), off.GetProperty("activations_bytes").GetInt64());
        Assert.True(off.GetProperty("activations_bytes").GetInt64() > 4 * on.GetProperty("activations_bytes").GetInt64());
    }

    [Fact]
    public void A_model_folder_with_config_json_is_read()
    {
        var dir = Directory.CreateTempSubdirectory("rt-plan-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "config.json"), LlamaPresets.Llama32_1B.ToJson());
            var (exit, stdout, _) = Plan("--model", dir.FullName, "--gpus", "1", "--json");
            Assert.Equal(PlanCommand.ExitFits, exit);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal(LlamaPresets.Llama32_1B.ParameterCount, doc.RootElement.GetProperty("parameters").GetInt64());
        }
        finally { dir.Delete(recursive: true); }
    }

    [Theory]
    [InlineData("--model", "llama9-1t")]                                             // neither preset nor folder
    [InlineData("--model", "llama3.1-405b", "--tp", "3")]                            // tp does not divide the heads
    [InlineData("--model", "llama3.1-8b", "--tp", "2", "--pp", "1", "--dp", "1", "--gpus", "4")]  // gpus != tp*pp*dp
    [InlineData("--model", "llama3.1-8b", "--lora-targets", "q_proj,lm_head")]       // not a projection
    public void Bad_input_exits_1_with_a_message(params string[] args)
    {
        var (exit, stdout, stderr) = Plan(args);
        Assert.Equal(PlanCommand.ExitError, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith("rt plan: ", stderr);
    }

    [Fact]
    public void Unknown_choices_are_parse_errors()
    {
        Assert.Equal(1, Plan("--model", "llama3.1-8b", "--gpu", "v100").Exit);
        Assert.Equal(1, Plan("--model", "llama3.1-8b", "--method", "dora").Exit);
        Assert.Equal(1, Plan("--method", "lora").Exit);                              // --model is required
    }

    [Fact]
    public void Rt_registers_plan()
    {
        // Through the real entry point (it prints to the console, which the test runner discards).
        Assert.Equal(PlanCommand.ExitFits, RtCommand.Run(["plan", "--model", "tiny", "--gpus", "1"]));
        Assert.Equal(PlanCommand.ExitDoesNotFit, RtCommand.Run(["plan", "--model", "llama3.1-405b", "--method", "full", "--gpus", "8"]));
    }
}
