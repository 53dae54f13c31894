using System.Text.Json;
using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class PlanJsonWriterTests
{
    static readonly string[] PerGpuFields =
    [
        "weights_bytes", "trainable_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "buffers_bytes",
        "reserve_bytes", "total_bytes", "capacity_bytes",
    ];

    static MemoryPlan Plan(FineTuneMethod method) => MemoryPlanner.Plan(new PlanRequest
    {
        Model = LlamaPresets.Llama31_70B, ModelName = "llama3.1-70b", Method = method, Gpu = GpuCatalog.Get("h100-80"), Gpus = 8,
    });

    [Fact]
    public void Json_has_the_documented_names_and_the_plan_values()
    {
        var plan = Plan(FineTuneMethod.Lora);
        using var doc = JsonDocument.Parse(PlanJsonWriter.Write(plan));
        var root = doc.RootElement;

        Assert.Equal(plan.Parameters, root.GetProperty("parameters").GetInt64());
        Assert.Equal(plan.TrainableParameters, root.GetProperty("trainable_parameters").GetInt64());
        Assert.Equal(plan.Fits, root.GetProperty("fits").GetBoolean());
        Assert.Equal(plan.Gpus, root.GetProperty("gpus").GetInt32());
        Assert.Equal(plan.MinGpus, root.GetProperty("min_gpus").GetInt32());

        var perGpu = root.GetProperty("per_gpu");
        foreach (var name in PerGpuFields) Assert.Equal(JsonValueKind.Number, perGpu.GetProperty(name).ValueKind);
        var m = plan.Chosen.Peak.Memory;
        Assert.Equal(m.Weights, perGpu.GetProperty("weights_bytes").GetInt64());
        Assert.Equal(m.Activations, perGpu.GetProperty("activations_bytes").GetInt64());
        Assert.Equal(plan.CapacityBytes, perGpu.GetProperty("capacity_bytes").GetInt64());
        long sum = PerGpuFields.Take(7).Sum(n => perGpu.GetProperty(n).GetInt64());
        Assert.Equal(sum, perGpu.GetProperty("total_bytes").GetInt64());

        var layouts = root.GetProperty("layouts");
        Assert.Equal(plan.FittingLayouts.Count, layouts.GetArrayLength());
        Assert.All(layouts.EnumerateArray(), l =>
        {
            Assert.Equal(8, l.GetProperty("tp").GetInt32() * l.GetProperty("pp").GetInt32() * l.GetProperty("dp").GetInt32());
            Assert.True(l.GetProperty("total_bytes").GetInt64() <= plan.BudgetBytes);
        });

        var layout = root.GetProperty("layout");
        Assert.Equal(plan.Chosen.Layout.Tp, layout.GetProperty("tp").GetInt32());
        Assert.Equal("search", layout.GetProperty("chosen_by").GetString());
        Assert.Equal(plan.Chosen.Stages.Count, root.GetProperty("stages").GetArrayLength());
        Assert.Contains("B/token", root.GetProperty("activation_formula").GetProperty("per_layer_per_token").GetString());
        Assert.Equal(0.9, root.GetProperty("headroom").GetDouble());
        Assert.NotEmpty(root.GetProperty("assumptions").EnumerateArray());
    }

    [Fact]
    public void Full_fine_tuning_writes_null_lora_and_a_refusal()
    {
        var plan = Plan(FineTuneMethod.Full);
        using var doc = JsonDocument.Parse(PlanJsonWriter.Write(plan));
        var root = doc.RootElement;
        Assert.Equal(JsonValueKind.Null, root.GetProperty("lora").ValueKind);
        Assert.False(root.GetProperty("fits").GetBoolean());
        Assert.Equal(0, root.GetProperty("layouts").GetArrayLength());
        Assert.True(root.GetProperty("min_gpus").GetInt32() > 8);
    }
}
