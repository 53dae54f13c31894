using static System.FormattableString;

namespace Runtime.Training.Planning;

/// <summary>
/// Sizes a fine-tuning run per GPU and per category before anything starts. Pure arithmetic on the model's
/// config: no torch, no files, no cluster. The same answer is meant to place workers and to admit runs.
/// </summary>
public static class MemoryPlanner
{
    /// <summary>Data-parallel gradients are all-reduced in buckets of this size, two in flight (PyTorch DDP's default cap).</summary>
    public const long GradientBucketBytes = 25L << 20;

    /// <summary>Plans the request: the given layout, or the best fitting layout of the GPU count, plus the minimum.</summary>
    public static MemoryPlan Plan(PlanRequest request)
    {
        request.Validate();
        var cfg = request.Model;
        LayoutPlan chosen;
        LayoutChoice chosenBy;
        List<LayoutPlan> fitting;
        int considered;

        if (request is { Tp: { } tp, Pp: { } pp, Dp: { } dp })
        {
            var layout = new ParallelLayout(tp, pp, dp);
            if (request.Gpus is { } n && n != layout.Gpus)
                throw new PlanningException($"--gpus {n} does not match the layout {layout} = {layout.Gpus} GPUs");
            chosen = PlanLayout(request, layout);
            chosenBy = LayoutChoice.Given;
            fitting = chosen.Fits ? [chosen] : [];
            considered = 1;
        }
        else
        {
            int gpus = request.Gpus ?? request.Gpu.GpusPerNode;
            var plans = LayoutSearch.Candidates(request, gpus).Select(l => PlanLayout(request, l)).ToList();
            if (plans.Count == 0)
                throw new PlanningException(
                    $"no layout uses exactly {gpus} GPUs with " + DescribeConstraints(request) +
                    $" (tp in {{{string.Join(", ", LayoutSearch.TensorParallelSizes)}}} within a node of {request.Gpu.GpusPerNode}, " +
                    $"tp dividing {cfg.NumAttentionHeads} heads, {cfg.NumKeyValueHeads} kv heads and {cfg.IntermediateSize}; " +
                    $"pp at most {cfg.NumHiddenLayers} layers)");
            fitting = LayoutSearch.Preferred(plans.Where(p => p.Fits)).ToList();
            chosen = fitting.FirstOrDefault() ?? plans.MinBy(p => p.PeakBytes)!;
            chosenBy = LayoutChoice.Searched;
            considered = plans.Count;
        }

        return new MemoryPlan
        {
            Request = request,
            Parameters = cfg.ParameterCount,
            TrainableParameters = request.IsLora ? StateAccounting.AdapterParameters(cfg, request.Lora) : cfg.ParameterCount,
            Chosen = chosen,
            ChosenBy = chosenBy,
            FittingLayouts = fitting,
            LayoutsConsidered = considered,
            Minimum = LayoutSearch.Minimum(request),
            ActivationFormula = new ActivationModel(request, chosen.Layout.Tp).Describe(),
            Assumptions = Assumptions(request, chosen.Layout),
        };
    }

    static string DescribeConstraints(PlanRequest r)
    {
        var given = new List<string>();
        if (r.Tp is { } tp) given.Add($"tp {tp}");
        if (r.Pp is { } pp) given.Add($"pp {pp}");
        if (r.Dp is { } dp) given.Add($"dp {dp}");
        return given.Count == 0 ? "any tp x pp x dp" : string.Join(", ", given);
    }

    /// <summary>
    /// Sizes one layout: splits the layers into stages and sizes each stage's GPUs. <paramref name="layerCounts"/>, when
    /// given, is the split to size (one count per stage, summing to the model's layers) instead of the planner's own:
    /// a run sized with another request than the one that split it (the cluster sizes Runtime's own engine over the
    /// split it already runs).
    /// </summary>
    public static LayoutPlan PlanLayout(PlanRequest request, ParallelLayout layout, IReadOnlyList<int>? layerCounts = null)
    {
        var cfg = request.Model;
        StateAccounting.CheckTensorParallel(cfg, layout.Tp);
        if (layout.Tp > request.Gpu.GpusPerNode)
            throw new PlanningException($"tp {layout.Tp} spans nodes: tensor parallelism stays inside a node of {request.Gpu.GpusPerNode} GPUs");
        if (layout.Pp > cfg.NumHiddenLayers)
            throw new PlanningException($"pp {layout.Pp} exceeds the model's {cfg.NumHiddenLayers} layers");
        if (layout.Dp < 1) throw new PlanningException($"dp must be at least 1 (got {layout.Dp})");

        int m = request.MicroBatches ?? layout.Pp;
        var activations = new ActivationModel(request, layout.Tp);
        long budget = (long)Math.Floor(request.Headroom * request.Gpu.CapacityBytes);
        int p = layout.Pp;
        if (layerCounts is not null && (layerCounts.Count != p || layerCounts.Any(n => n < 1) || layerCounts.Sum() != cfg.NumHiddenLayers))
            throw new PlanningException(
                $"the split [{string.Join(", ", layerCounts)}] is not {p} stages of at least one layer summing to the model's {cfg.NumHiddenLayers} layers");
        var counts = layerCounts?.ToArray()
            ?? PipelineSplit.LayerCounts(cfg.NumHiddenLayers, p, (s, n) => SizeStage(request, layout, activations, m, s, 0, n).Memory.Total);

        var stages = new List<StagePlan>(p);
        int first = 0;
        for (int s = 0; s < p; s++)
        {
            stages.Add(SizeStage(request, layout, activations, m, s, first, counts[s]));
            first += counts[s];
        }
        return new LayoutPlan(layout, m, stages, budget);
    }

    static StagePlan SizeStage(PlanRequest request, ParallelLayout layout, ActivationModel activations, int m, int s, int first, int layers)
    {
        int p = layout.Pp;
        bool holdsEmbedding = s == 0, holdsHead = s == p - 1;
        int inFlight = request.Schedule == PipelineSchedule.OneFOneB ? Math.Min(p - s, m) : m;
        var state = StateAccounting.ForStage(request, layout.Tp, layers, holdsEmbedding, holdsHead, p);
        long optimizer = state.Optimizer / OptimizerShards(request, layout);
        long tokens = request.TokensPerMicroBatch;
        long acts = activations.StageBytes(tokens, layers, inFlight, holdsHead, request.GradientCheckpointing, holdsEmbedding);

        // Pipeline p2p: at each stage boundary one received activation and one received gradient of a micro-batch.
        int boundaries = p == 1 ? 0 : s == 0 || s == p - 1 ? 1 : 2;
        long boundaryBytes = boundaries * 2L * tokens * request.ComputeBytes * request.Model.HiddenSize;
        long bucketBytes = layout.Dp > 1 ? 2 * Math.Min(state.Gradients, GradientBucketBytes) : 0;
        long buffers = boundaryBytes + bucketBytes;

        long tensors = state.Weights + state.Trainable + state.Gradients + optimizer + acts + buffers;
        long reserve = (long)Math.Ceiling(request.Reserve.FragmentationFraction * tensors) + request.Reserve.RuntimeBytes;
        return new StagePlan(
            s, first, layers, holdsEmbedding, holdsHead, inFlight, state.TrainableParameters,
            new MemoryBreakdown(state.Weights, state.Trainable, state.Gradients, optimizer, acts, buffers, reserve),
            activations.StageBytes(tokens, layers, inFlight, holdsHead, recompute: true, holdsEmbedding),
            activations.StageBytes(tokens, layers, inFlight, holdsHead, recompute: false, holdsEmbedding));
    }

    /// <summary>The divisor of optimizer state across data-parallel replicas; 1 until Runtime shards it (ZeRO-1).</summary>
    static int OptimizerShards(PlanRequest request, ParallelLayout layout) => request.OptimizerSharding switch
    {
        OptimizerStateSharding.None => 1,
        _ => throw new PlanningException($"optimizer sharding {request.OptimizerSharding} is not supported"),
    };

    static IReadOnlyList<string> Assumptions(PlanRequest r, ParallelLayout layout)
    {
        var list = new List<string>();
        switch (r.Method)
        {
            case FineTuneMethod.Full when r.Precision == ComputePrecision.Bf16:
                list.Add("full fine-tuning in bf16: bf16 weights (2 B/param), fp32 gradients (4), AdamW m and v (8) and fp32 master weights (4): 18 B/param");
                break;
            case FineTuneMethod.Full:
                list.Add("full fine-tuning in fp32: fp32 weights (4 B/param), fp32 gradients (4), AdamW m and v (8): 16 B/param");
                break;
            case FineTuneMethod.Lora:
                list.Add($"LoRA: base frozen in {(r.Precision == ComputePrecision.Bf16 ? "bf16" : "fp32")}; adapters, their gradients and AdamW state in fp32 (16 B per adapter parameter)");
                break;
            case FineTuneMethod.Qlora:
                list.Add(Invariant($"QLoRA: the seven projections in NF4 ({Nf4Storage.BytesPerParameter:0.0000} B/param: 4-bit codes, 8-bit absmax per {Nf4Storage.BlockSize}, fp32 absmax per {Nf4Storage.StatisticsBlockSize} of those); embeddings, norms and lm_head in bf16; adapters, gradients and AdamW state in fp32"));
                break;
        }
        if (r.IsLora && layout.Tp > 1)
            list.Add("under tensor parallelism LoRA A of column-parallel and B of row-parallel projections are replicated on every tp rank");
        list.Add(r.VocabularyParallel
            ? "tensor parallelism splits whole heads (tp divides attention and key/value heads), MLP columns and the vocabulary (vocab-parallel embedding, head and loss); norms and the residual stream are replicated (no sequence parallelism)"
            : "tensor parallelism splits whole heads (tp divides attention and key/value heads) and MLP columns; the embedding, lm_head and loss are replicated on every tp rank (vocab-parallel off; --vocab-parallel or run.parallel.vocab-parallel = on splits them); norms and the residual stream are replicated");
        list.Add("pipeline stages hold contiguous layers; stage 0 the embedding, the last stage the final norm, lm_head and loss; when pp does not divide the layers the extra layers go to the least loaded stages");
        list.Add("data-parallel replicas each hold a full copy of their stage's weights, gradients and optimizer state (optimizer_sharding = none: no ZeRO/FSDP yet)");
        list.Add("activations: tensors autograd keeps for a transformers-style Llama layer (checked against torch 2.11 saved-tensor hooks); the loss is not chunked (12 B per token per vocabulary entry at its peak)");
        list.Add(Invariant($"reserve: {100 * r.Reserve.FragmentationFraction:0.#}% of the tensor bytes for allocator fragmentation + {r.Reserve.RuntimeBytes / (double)(1L << 30):0.##} GiB for the CUDA context, cuBLAS workspace and NCCL"));
        if (layout.Dp > 1) list.Add("data-parallel gradients all-reduced in 25 MiB buckets, two in flight");
        return list;
    }
}
