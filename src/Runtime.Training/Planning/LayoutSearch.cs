namespace Runtime.Training.Planning;

/// <summary>
/// Which tp x pp x dp layouts a GPU count allows, which of them to prefer, and the fewest GPUs that fit.
/// Preference (a throughput proxy): fewer pipeline stages first (each stage adds bubbles of (p - 1) / (m + p - 1) and
/// holds more micro-batches in flight), then a smaller tp (two all-reduces of the activations per layer, inside a node),
/// which leaves the most data parallelism.
/// </summary>
public static class LayoutSearch
{
    public const int MaxGpus = 1024;
    public static IReadOnlyList<int> TensorParallelSizes { get; } = [1, 2, 4, 8];

    /// <summary>Layouts using exactly <paramref name="gpus"/> GPUs, honouring any of tp, pp, dp the request fixes.</summary>
    public static IEnumerable<ParallelLayout> Candidates(PlanRequest request, int gpus)
    {
        int layers = request.Model.NumHiddenLayers;
        foreach (var tp in TensorParallelOptions(request))
        {
            if (gpus % tp != 0) continue;
            foreach (var pp in PipelineOptions(request, Math.Min(layers, gpus / tp)))
            {
                if (gpus % (tp * pp) != 0) continue;
                int dp = gpus / (tp * pp);
                if (request.Dp is { } fixedDp && fixedDp != dp) continue;
                yield return new ParallelLayout(tp, pp, dp);
            }
        }
    }

    /// <summary>Orders sized layouts by preference: fewer stages, then smaller tp.</summary>
    public static IEnumerable<LayoutPlan> Preferred(IEnumerable<LayoutPlan> plans) =>
        plans.OrderBy(p => p.Layout.Pp).ThenBy(p => p.Layout.Tp);

    /// <summary>
    /// The fewest GPUs (up to <see cref="MaxGpus"/>) with a fitting layout, dp = 1 unless the request fixes dp
    /// (replicas only add GPUs). Ties go to the preferred layout. Null when nothing up to the cap fits.
    /// </summary>
    public static LayoutPlan? Minimum(PlanRequest request)
    {
        int dp = request.Dp ?? 1;
        LayoutPlan? best = null;
        foreach (var tp in TensorParallelOptions(request))
        {
            int maxPp = Math.Min(request.Model.NumHiddenLayers, MaxGpus / (tp * dp));
            // For a fixed tp more stages means more GPUs, so the first fitting pp is this tp's minimum.
            foreach (var pp in PipelineOptions(request, maxPp))
            {
                var plan = MemoryPlanner.PlanLayout(request, new ParallelLayout(tp, pp, dp));
                if (!plan.Fits) continue;
                if (best is null || plan.Layout.Gpus < best.Layout.Gpus
                                 || plan.Layout.Gpus == best.Layout.Gpus && plan.Layout.Pp < best.Layout.Pp)
                    best = plan;
                break;
            }
        }
        return best;
    }

    static IEnumerable<int> TensorParallelOptions(PlanRequest request)
    {
        if (request.Tp is { } tp)
        {
            StateAccounting.CheckTensorParallel(request.Model, tp);
            if (tp > request.Gpu.GpusPerNode)
                throw new PlanningException($"tp {tp} spans nodes: tensor parallelism stays inside a node of {request.Gpu.GpusPerNode} GPUs");
            return [tp];
        }
        return TensorParallelSizes.Where(t => t <= request.Gpu.GpusPerNode && StateAccounting.TensorParallelFits(request.Model, t));
    }

    static IEnumerable<int> PipelineOptions(PlanRequest request, int maxPp)
    {
        if (request.Pp is { } pp)
        {
            if (pp > request.Model.NumHiddenLayers)
                throw new PlanningException($"pp {pp} exceeds the model's {request.Model.NumHiddenLayers} layers");
            return pp <= maxPp ? [pp] : [];
        }
        return Enumerable.Range(1, Math.Max(0, maxPp));
    }
}
