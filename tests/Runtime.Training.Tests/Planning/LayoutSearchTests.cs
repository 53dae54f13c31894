using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class LayoutSearchTests
{
    static PlanRequest Llama405B(FineTuneMethod method, int? gpus = 8) => new()
    {
        Model = LlamaPresets.Llama31_405B, ModelName = "llama3.1-405b", Method = method,
        SequenceLength = 4096, Gpu = GpuCatalog.Get("b200"), Gpus = gpus,
    };

    [Fact]
    public void Qlora_405b_fits_one_node_of_b200_and_the_preferred_layout_is_chosen()
    {
        var plan = MemoryPlanner.Plan(Llama405B(FineTuneMethod.Qlora));
        Assert.True(plan.Fits);
        Assert.Equal(8, plan.Gpus);
        Assert.Equal(1, plan.Nodes);
        Assert.Equal(LayoutChoice.Searched, plan.ChosenBy);
        Assert.NotEmpty(plan.FittingLayouts);
        Assert.Same(plan.FittingLayouts[0], plan.Chosen);
        Assert.All(plan.FittingLayouts, l =>
        {
            Assert.Equal(8, l.Layout.Gpus);
            Assert.True(l.PeakBytes <= plan.BudgetBytes);
            // Nothing listed is preferred over the chosen one: fewer stages first, then smaller tp.
            Assert.True((l.Layout.Pp, l.Layout.Tp).CompareTo((plan.Chosen.Layout.Pp, plan.Chosen.Layout.Tp)) >= 0);
        });
        Assert.True(plan.MinGpus <= 8);
    }

    [Fact]
    public void Full_fine_tuning_405b_is_refused_on_8_b200_and_the_minimum_is_the_fewest_gpus_that_fit()
    {
        var request = Llama405B(FineTuneMethod.Full);
        var plan = MemoryPlanner.Plan(request);
        Assert.False(plan.Fits);
        Assert.Empty(plan.FittingLayouts);
        Assert.True(plan.Chosen.PeakBytes > plan.BudgetBytes);

        var min = Assert.IsType<int>(plan.MinGpus);
        // 18 bytes a parameter (bf16 weight, fp32 gradient, fp32 master, AdamW m and v) cannot fit in fewer GPUs
        // than 18 x 405.85e9 / budget, whatever the layout.
        long budget = (long)Math.Floor(0.9 * GpuCatalog.Get("b200").CapacityBytes);
        Assert.True(min >= 18 * 405_853_388_800 / budget + 1, $"min_gpus {min}");
        Assert.True(plan.Minimum!.Fits);
        Assert.Equal(min, plan.Minimum.Layout.Gpus);
        Assert.Equal((min + 7) / 8, plan.MinNodes);

        // No layout of any smaller GPU count fits (dp > 1 only adds buffers, but check those too).
        for (int n = 1; n < min; n++)
            foreach (var layout in LayoutSearch.Candidates(request with { Gpus = n }, n))
                Assert.False(MemoryPlanner.PlanLayout(request, layout).Fits, $"{layout} on {n} GPUs");
    }

    [Fact]
    public void Layers_that_do_not_divide_go_to_the_least_loaded_stages()
    {
        var plan = MemoryPlanner.Plan(Llama405B(FineTuneMethod.Qlora) with { Tp = 1, Pp = 8, Dp = 1 });
        var stages = plan.Chosen.Stages;
        Assert.Equal(126, stages.Sum(s => s.Layers));
        Assert.All(stages, s => Assert.InRange(s.Layers, 15, 16));
        for (int i = 1; i < stages.Count; i++) Assert.Equal(stages[i - 1].FirstLayer + stages[i - 1].Layers, stages[i].FirstLayer);
        // Under 1F1B stage 0 holds 8 micro-batches in flight: it is the heaviest and gets no extra layer.
        Assert.Equal(8, stages[0].MicroBatchesInFlight);
        Assert.Equal(15, stages[0].Layers);
        Assert.Equal(LayoutChoice.Given, plan.ChosenBy);
    }

    [Fact]
    public void Given_dimensions_constrain_the_search()
    {
        var plan = MemoryPlanner.Plan(Llama405B(FineTuneMethod.Lora, gpus: 16) with { Tp = 8 });
        Assert.All(plan.FittingLayouts, l => Assert.Equal(8, l.Layout.Tp));
        Assert.Equal(8, plan.Chosen.Layout.Tp);
        Assert.Equal(16, plan.Gpus);
        Assert.Equal(8, plan.Minimum!.Layout.Tp);
    }

    [Fact]
    public void Tensor_parallel_sizes_must_divide_heads_and_stay_in_a_node()
    {
        // small: 12 heads, 4 kv heads: tp 8 is skipped by the search and refused when asked for.
        var small = new PlanRequest { Model = LlamaPresets.Small, Gpu = GpuCatalog.Get("h100-80"), Gpus = 8 };
        Assert.DoesNotContain(LayoutSearch.Candidates(small, 8), l => l.Tp == 8);
        Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(small with { Tp = 8 }));
        var e = Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(Llama405B(FineTuneMethod.Qlora, gpus: 32) with { Tp = 16 }));
        Assert.Contains("num_key_value_heads (8)", e.Message);
        var fourPerNode = new GpuSpec("b200x4", "4-GPU node", GpuCatalog.Get("b200").CapacityBytes, 4, "test");
        e = Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(Llama405B(FineTuneMethod.Qlora) with { Gpu = fourPerNode, Tp = 8 }));
        Assert.Contains("spans nodes", e.Message);
        Assert.All(MemoryPlanner.Plan(Llama405B(FineTuneMethod.Qlora) with { Gpu = fourPerNode }).FittingLayouts,
            l => Assert.True(l.Layout.Tp <= 4));
    }
}
