using Runtime.Model.Config;

namespace Runtime.Training.Planning;

public enum FineTuneMethod { Full, Lora, Qlora }

/// <summary>The dtype the forward and backward run in; also the dtype of the (non-quantized) base weights.</summary>
public enum ComputePrecision { Bf16, Fp32 }

public enum PipelineSchedule
{
    /// <summary>One forward, one backward: stage s holds at most min(p - s, m) micro-batches in flight.</summary>
    OneFOneB,
    /// <summary>All forwards, then all backwards: every stage holds all m micro-batches.</summary>
    GPipe,
}

public enum AttentionKernel
{
    /// <summary>scaled_dot_product_attention with a flash / memory-efficient kernel: no seq x seq tensors kept.</summary>
    Fused,
    /// <summary>Explicit softmax(QK^T)V as transformers' eager path: keeps the probabilities (fp32 and compute dtype).</summary>
    Eager,
}

/// <summary>Whose autograd the activation formula follows.</summary>
public enum ActivationEngine
{
    /// <summary>PyTorch with transformers, PEFT and bitsandbytes: the counts checked with torch 2.11 on H100 and H200.</summary>
    PyTorch,
    /// <summary>
    /// Runtime's TorchSharp engine on CPU, as measured: as PyTorch, except that an NF4 projection keeps its dequantized
    /// weight until its backward (no custom autograd function re-dequantizes it, as bitsandbytes' MatMul4Bit does), and
    /// that a recomputed layer also holds the CPU's temporaries of dequantizing a weight and of drawing a dropout mask.
    /// </summary>
    RuntimeCpu,
}

/// <summary>
/// How optimizer state (and fp32 master weights) are spread over data-parallel replicas. Runtime keeps a full copy
/// per replica today (no ZeRO/FSDP); a sharded mode would divide those two categories by dp, and belongs here.
/// </summary>
public enum OptimizerStateSharding { None }

/// <summary>Tensor-parallel split of a projection (Megatron): column = output rows split, row = input columns split.</summary>
public enum TensorSplit { Column, Row }

/// <summary>One of the seven projections of a Llama decoder layer, by its Hugging Face/PEFT module name.</summary>
public sealed record LinearModule(string Name, string ShortName, long Out, long In, TensorSplit Split, AdapterInput Input)
{
    public long Parameters => Out * In;

    /// <summary>The seven projections of a layer, in the order they run.</summary>
    public static IReadOnlyList<LinearModule> OfLayer(LlamaConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, f = c.IntermediateSize;
        return
        [
            new("q_proj", "q", q, h, TensorSplit.Column, AdapterInput.AttentionNorm),
            new("k_proj", "k", kv, h, TensorSplit.Column, AdapterInput.AttentionNorm),
            new("v_proj", "v", kv, h, TensorSplit.Column, AdapterInput.AttentionNorm),
            new("o_proj", "o", h, q, TensorSplit.Row, AdapterInput.AttentionOutput),
            new("gate_proj", "gate", f, h, TensorSplit.Column, AdapterInput.MlpNorm),
            new("up_proj", "up", f, h, TensorSplit.Column, AdapterInput.MlpNorm),
            new("down_proj", "down", h, f, TensorSplit.Row, AdapterInput.MlpProduct),
        ];
    }

    public static readonly IReadOnlyList<string> AllNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
}

/// <summary>The tensor a projection reads; projections that read the same tensor can share what autograd keeps of it.</summary>
public enum AdapterInput { AttentionNorm, AttentionOutput, MlpNorm, MlpProduct }

/// <summary>LoRA shape: rank, target projections (PEFT names), dropout on the adapter input.</summary>
public sealed record LoraSettings(int Rank, IReadOnlyList<string> Targets, double Dropout = 0)
{
    public static LoraSettings Default { get; } = new(16, LinearModule.AllNames);

    /// <summary>Parses "all" / "all-linear" or a comma list of PEFT names (q_proj) or short names (q).</summary>
    public static IReadOnlyList<string> ParseTargets(string text)
    {
        var t = text.Trim();
        if (t is "all" or "all-linear") return LinearModule.AllNames;
        var names = new List<string>();
        foreach (var raw in t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var name = raw.EndsWith("_proj", StringComparison.Ordinal) ? raw : raw + "_proj";
            if (!LinearModule.AllNames.Contains(name))
                throw new PlanningException(
                    $"LoRA target '{raw}' is not a Llama projection (use {string.Join(", ", LinearModule.AllNames)} or 'all')");
            if (!names.Contains(name)) names.Add(name);
        }
        if (names.Count == 0) throw new PlanningException("LoRA targets are empty (use 'all' or a comma list such as q_proj,v_proj)");
        return names;
    }
}

/// <summary>Memory kept aside beyond the tensors: allocator fragmentation and what CUDA/NCCL take outside torch.</summary>
public sealed record ReservePolicy(double FragmentationFraction, long RuntimeBytes)
{
    /// <summary>
    /// 5% of the tensor bytes for the caching allocator's fragmentation (the usual gap between PyTorch's reserved and
    /// allocated memory in steady training), plus 1 GiB for the CUDA context and cuBLAS workspace (measured 595 MiB
    /// outside torch's allocator after init and one bf16 matmul, torch 2.11 on H100 and H200) and NCCL's
    /// per-communicator buffers.
    /// </summary>
    public static ReservePolicy Default { get; } = new(0.05, 1L << 30);
}

/// <summary>A tensor x pipeline x data parallel layout: tp ranks inside a stage, pp stages, dp replicas.</summary>
public readonly record struct ParallelLayout(int Tp, int Pp, int Dp)
{
    public int Gpus => Tp * Pp * Dp;
    public override string ToString() => $"tp {Tp} x pp {Pp} x dp {Dp}";
}

/// <summary>Everything the planner needs to size one run. Defaults are Runtime's defaults.</summary>
public sealed record PlanRequest
{
    public required LlamaConfig Model { get; init; }
    public string ModelName { get; init; } = "model";
    public FineTuneMethod Method { get; init; } = FineTuneMethod.Lora;
    public LoraSettings Lora { get; init; } = LoraSettings.Default;
    public ComputePrecision Precision { get; init; } = ComputePrecision.Bf16;
    public int MicroBatchSize { get; init; } = 1;
    public int SequenceLength { get; init; } = 2048;
    /// <summary>Packed rows are always full; their block-diagonal mask is materialized ([mb, 1, seq, seq]).</summary>
    public bool Packing { get; init; }
    public bool GradientCheckpointing { get; init; } = true;
    /// <summary>Micro-batches per replica per optimizer step; null = the number of pipeline stages (1F1B's steady state).</summary>
    public int? MicroBatches { get; init; }
    public PipelineSchedule Schedule { get; init; } = PipelineSchedule.OneFOneB;
    public AttentionKernel Attention { get; init; } = AttentionKernel.Fused;
    /// <summary>Whose autograd keeps the activations (PyTorch's, validated on GPUs, by default).</summary>
    public ActivationEngine Engine { get; init; } = ActivationEngine.PyTorch;
    public OptimizerStateSharding OptimizerSharding { get; init; } = OptimizerStateSharding.None;
    /// <summary>
    /// Megatron's vocab-parallel embedding, head and loss (each tp rank holds V/t rows): a run spec's
    /// run.parallel.vocab-parallel = on, which Runtime's tensor-parallel workers run. Off: every tp rank holds both
    /// tables whole and computes the whole loss.
    /// </summary>
    public bool VocabularyParallel { get; init; }

    /// <summary>Vocabulary rows (embedding, head, logits columns) one tp rank holds.</summary>
    public long VocabularyRowsPerRank(int tp) => VocabularyParallel ? (Model.VocabSize + tp - 1) / tp : Model.VocabSize;
    public required GpuSpec Gpu { get; init; }
    /// <summary>GPUs to plan for; null = one node when no layout is given.</summary>
    public int? Gpus { get; init; }
    public int? Tp { get; init; }
    public int? Pp { get; init; }
    public int? Dp { get; init; }
    /// <summary>Fraction of the exposed memory a plan may use (the rest absorbs spikes).</summary>
    public double Headroom { get; init; } = 0.9;
    public ReservePolicy Reserve { get; init; } = ReservePolicy.Default;

    public bool IsLora => Method is FineTuneMethod.Lora or FineTuneMethod.Qlora;
    public int ComputeBytes => Precision == ComputePrecision.Bf16 ? 2 : 4;
    public long TokensPerMicroBatch => (long)MicroBatchSize * SequenceLength;

    public PlanRequest Validate()
    {
        Model.Validate(ModelName);
        if (MicroBatchSize < 1) throw new PlanningException($"micro-batch size must be at least 1 (got {MicroBatchSize})");
        if (SequenceLength < 1) throw new PlanningException($"sequence length must be at least 1 (got {SequenceLength})");
        if (MicroBatches is < 1) throw new PlanningException($"micro-batches per step must be at least 1 (got {MicroBatches})");
        if (!(Headroom > 0 && Headroom <= 1)) throw new PlanningException($"headroom must be in (0, 1] (got {Headroom})");
        if (Gpus is < 1) throw new PlanningException($"--gpus must be at least 1 (got {Gpus})");
        foreach (var (name, v) in new[] { ("tp", Tp), ("pp", Pp), ("dp", Dp) })
            if (v is < 1) throw new PlanningException($"--{name} must be at least 1 (got {v})");
        if (IsLora)
        {
            if (Lora.Rank < 1) throw new PlanningException($"LoRA rank must be at least 1 (got {Lora.Rank})");
            if (!(Lora.Dropout >= 0 && Lora.Dropout < 1)) throw new PlanningException($"LoRA dropout must be in [0, 1) (got {Lora.Dropout})");
            LoraSettings.ParseTargets(string.Join(',', Lora.Targets));
        }
        if (Method == FineTuneMethod.Qlora && Precision == ComputePrecision.Fp32)
            throw new PlanningException("QLoRA computes in bf16 (NF4 weights dequantize to bf16); use --precision bf16");
        return this;
    }
}

/// <summary>A request the planner cannot size; the message says which input is wrong.</summary>
public sealed class PlanningException(string message) : Exception(message);
