using Runtime.Model.Llama;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

public class PipelineSplitTests
{
    [Fact]
    public void Layers_split_into_contiguous_ranges_with_the_embedding_first_and_the_head_last()
    {
        Assert.Equal([2, 2, 3], PipelineSplit.LayerCounts(7, 3));
        Assert.Equal([3, 3], PipelineSplit.LayerCounts(6, 2));
        Assert.Equal(
            [new LlamaSliceSpec(0, 2, true, false), new LlamaSliceSpec(2, 4, false, false), new LlamaSliceSpec(4, 7, false, true)],
            PipelineSplit.Slices([2, 2, 3]));
        Assert.Equal([new LlamaSliceSpec(0, 5, true, true)], PipelineSplit.Slices([5]));
    }

    [Fact]
    public void Extra_layers_go_to_the_stages_the_cost_says_are_least_loaded()
    {
        // Stage 2 is the heaviest, stage 0 the lightest: the two extra layers of 8 over 3 go to stages 0 and 1.
        Assert.Equal([3, 3, 2], PipelineSplit.LayerCounts(8, 3, (stage, layers) => stage * 100 + layers));
        Assert.Equal([2, 3, 3], PipelineSplit.LayerCounts(8, 3, (stage, layers) => (2 - stage) * 100 + layers));
    }

    [Fact]
    public void The_planner_sizes_the_stages_the_split_gives()
    {
        var request = new PlanRequest { Model = ToyModel.Config(layers: 7), Gpu = GpuCatalog.Get("h100-80"), Tp = 1, Pp = 3, Dp = 1 };
        var plan = MemoryPlanner.PlanLayout(request, new ParallelLayout(1, 3, 1));
        var counts = plan.Stages.Select(s => s.Layers).ToArray();
        Assert.Equal(7, counts.Sum());
        Assert.Equal(PipelineSplit.Slices(counts).Select(s => s.FirstLayer), plan.Stages.Select(s => s.FirstLayer));
    }

    [Fact]
    public void A_given_split_is_sized_as_given_and_a_split_that_does_not_add_up_is_refused()
    {
        var request = new PlanRequest { Model = ToyModel.Config(layers: 7), Gpu = GpuCatalog.Get("h100-80"), Tp = 1, Pp = 3, Dp = 1 };
        var layout = new ParallelLayout(1, 3, 1);
        var given = MemoryPlanner.PlanLayout(request, layout, [1, 1, 5]);
        Assert.Equal([1, 1, 5], given.Stages.Select(s => s.Layers));
        Assert.Equal([0, 1, 2], given.Stages.Select(s => s.FirstLayer));
        // The same stage sized by the planner's own split has the same bytes when it has the same layers.
        var own = MemoryPlanner.PlanLayout(request, layout);
        var ownLast = own.Stages[^1];
        Assert.Equal(MemoryPlanner.PlanLayout(request, layout, [7 - own.Stages[^1].Layers - 1, 1, ownLast.Layers]).Stages[^1].Memory, ownLast.Memory);
        foreach (var bad in new[] { new[] { 1, 1 }, [1, 1, 4], [0, 2, 5] })
            Assert.Throws<PlanningException>(() => MemoryPlanner.PlanLayout(request, layout, bad));
    }

    [Fact]
    public void More_stages_than_layers_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PipelineSplit.LayerCounts(2, 3));
    }
}
