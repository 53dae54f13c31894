namespace Runtime.Training.Planning;

/// <summary>Bytes on one GPU by category; <see cref="Total"/> is their sum.</summary>
public sealed record MemoryBreakdown(
    long Weights, long Trainable, long Gradients, long Optimizer, long Activations, long Buffers, long Reserve)
{
    public long Total => Weights + Trainable + Gradients + Optimizer + Activations + Buffers + Reserve;
}

/// <summary>One pipeline stage (any of its tp ranks: they are alike) and what each of its GPUs holds.</summary>
public sealed record StagePlan(
    int Stage,
    int FirstLayer,
    int Layers,
    bool HoldsEmbedding,
    bool HoldsHead,
    int MicroBatchesInFlight,
    long TrainableParametersPerGpu,
    MemoryBreakdown Memory,
    long ActivationsWithRecompute,
    long ActivationsWithoutRecompute)
{
    public int LastLayer => FirstLayer + Layers - 1;
}

/// <summary>A layout sized: every stage, the most loaded one, and whether it fits under the budget.</summary>
public sealed record LayoutPlan(ParallelLayout Layout, int MicroBatches, IReadOnlyList<StagePlan> Stages, long BudgetBytes)
{
    /// <summary>The most loaded stage (the first of equals).</summary>
    public StagePlan Peak => Stages.Aggregate((a, b) => b.Memory.Total > a.Memory.Total ? b : a);
    public long PeakBytes => Peak.Memory.Total;
    public bool Fits => PeakBytes <= BudgetBytes;
}

public enum LayoutChoice
{
    /// <summary>tp, pp and dp were all given.</summary>
    Given,
    /// <summary>The planner searched the layouts of the GPU count (honouring any dimension given).</summary>
    Searched,
}

/// <summary>The planner's answer for one request.</summary>
public sealed record MemoryPlan
{
    public required PlanRequest Request { get; init; }
    public required long Parameters { get; init; }
    public required long TrainableParameters { get; init; }
    public required LayoutPlan Chosen { get; init; }
    public required LayoutChoice ChosenBy { get; init; }
    /// <summary>Layouts of <see cref="Gpus"/> GPUs that fit, best first.</summary>
    public required IReadOnlyList<LayoutPlan> FittingLayouts { get; init; }
    /// <summary>How many layouts of <see cref="Gpus"/> GPUs were sized.</summary>
    public required int LayoutsConsidered { get; init; }
    /// <summary>The fewest GPUs with a fitting layout (dp = 1, or the given dp), searched up to <see cref="LayoutSearch.MaxGpus"/>; null if none.</summary>
    public required LayoutPlan? Minimum { get; init; }
    public required ActivationFormula ActivationFormula { get; init; }
    public required IReadOnlyList<string> Assumptions { get; init; }

    public int Gpus => Chosen.Layout.Gpus;
    public int Nodes => NodesFor(Gpus);
    public bool Fits => Chosen.Fits;
    public long CapacityBytes => Request.Gpu.CapacityBytes;
    public long BudgetBytes => Chosen.BudgetBytes;
    public int? MinGpus => Minimum?.Layout.Gpus;
    public int? MinNodes => Minimum is null ? null : NodesFor(Minimum.Layout.Gpus);

    int NodesFor(int gpus) => (gpus + Request.Gpu.GpusPerNode - 1) / Request.Gpu.GpusPerNode;
}
