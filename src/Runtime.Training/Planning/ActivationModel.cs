using System.Globalization;

namespace Runtime.Training.Planning;

/// <summary>
/// What autograd keeps for backward, per token, on one tensor-parallel rank, for a Llama decoder layer written the way
/// llama-hf.md states the forward (Korthikanti et al.'s accounting, redone for RMSNorm + GQA + SwiGLU):
/// <list type="bullet">
/// <item>RMSNorm upcasts its input to fp32 (kept by pow and mul: 4h) plus the fp32 rstd (4); the normalized
/// compute-dtype tensor (c·h) only when the norm weight is trained.</item>
/// <item>A linear keeps its input only when its weight is trained; a frozen base (LoRA, QLoRA) keeps nothing.</item>
/// <item>Rotary keeps only cos/sin (shared by all layers). K and V are repeated to all query heads before
/// attention (TorchSharp's SDPA has no GQA flag), so attention keeps q, k, v at full head count plus its output
/// (4·c·(a/t)d) and the fp32 logsumexp (4·a/t). The flash kernel's output is laid out [b, s, heads, d], so
/// o_proj's input is a view of it and costs nothing more. Eager attention keeps q, kᵀ, v, the fp32 softmax and its
/// compute-dtype copy ((4 + c)·(a/t)·s) and o_proj's input when o_proj is trained.</item>
/// <item>SwiGLU keeps gate's output (for silu), silu's output and up's output (3·c·f/t), and down's input when trained.</item>
/// <item>A LoRA adapter (fp32, PEFT convention) casts its input to fp32 (a copy per adapted projection, 4·in) and keeps
/// A's output (4·r); with dropout it keeps the dropped fp32 input and a 1-byte mask instead. In fp32 compute the
/// cast is a no-op and projections reading the same tensor share it.</item>
/// </list>
/// These counts were checked against torch 2.11 on H100 and H200 (saved-tensor hooks, bf16, one 8B-shaped layer):
/// full fine-tuning 213,128 B/token, LoRA on all seven projections 307,784, LoRA on q,v 184,584, frozen 151,688,
/// eager full 409,608 at seq 1024 — each equal to this model's number. The backward of one layer additionally holds
/// the gradients of the three MLP intermediates and of the residual stream (c·(3f/t + h), also measured).
/// The loss on the last stage keeps fp32 log-probabilities (4·V/t) and, while it runs backward, their gradient and
/// the fp32 logits' gradient (8·V/t): a measured peak of 12 bytes per token per vocabulary entry.
/// No sequence parallelism: norms, residuals and the inputs of column-parallel projections are replicated on each
/// tp rank; attention heads, MLP columns and the vocabulary (Megatron's vocab-parallel head) are split.
/// </summary>
public sealed class ActivationModel
{
    public int Tp { get; }
    public int ComputeBytes { get; }
    public bool Recompute { get; }

    /// <summary>What one layer keeps for one token when nothing is recomputed.</summary>
    public ByteExpression Layer { get; }
    /// <summary>What a recomputed (checkpointed) layer keeps per token between its forward and its backward: its input.</summary>
    public ByteExpression Checkpoint { get; }
    /// <summary>Gradients alive while one layer runs its backward (one micro-batch).</summary>
    public ByteExpression BackwardTransient { get; }
    /// <summary>The attention mask per token (a row of [mb, 1, seq, seq]), once per micro-batch in flight.</summary>
    public ByteExpression Mask { get; }
    /// <summary>Last stage, per micro-batch in flight: final norm, head input when trained, fp32 log-probabilities.</summary>
    public ByteExpression HeadSaved { get; }
    /// <summary>Last stage, one micro-batch: fp32 gradients of the log-probabilities and of the logits.</summary>
    public ByteExpression HeadTransient { get; }

    /// <summary>The vocabulary columns of the logits on one tp rank: V/t when vocab-parallel, else all V.</summary>
    string Vocab { get; }

    public ActivationModel(PlanRequest request, int tp)
    {
        Vocab = request.VocabularyParallel ? "V/t" : "V";
        var cfg = request.Model;
        Tp = tp;
        ComputeBytes = request.ComputeBytes;
        Recompute = request.GradientCheckpointing;
        int c = ComputeBytes;
        long headsPerRank = cfg.NumAttentionHeads / tp;
        var values = new Dictionary<string, long>
        {
            ["h"] = cfg.HiddenSize,
            ["(a/t)d"] = headsPerRank * cfg.HeadDim,
            ["f/t"] = cfg.IntermediateSize / tp,
            ["a/t"] = headsPerRank,
            ["(a/t)s"] = headsPerRank * request.SequenceLength,
            ["s"] = request.SequenceLength,
            ["r"] = request.Lora.Rank,
            [Vocab] = request.VocabularyRowsPerRank(tp),
            ["1"] = 1,
        };
        bool full = request.Method == FineTuneMethod.Full;
        bool eager = request.Attention == AttentionKernel.Eager;

        Layer = new ByteExpression(values)
            .Add("RMSNorm fp32 input (x2)", 2 * 4, "h")
            .Add("RMSNorm fp32 rstd (x2)", 2 * 4, "1")
            .Add("RMSNorm normalized input of the trained weight (x2)", full ? 2 * c : 0, "h")
            .Add("q/k/v input (trained)", full ? c : 0, "h");
        if (eager)
        {
            Layer.Add("attention q, k^T, v (kv repeated)", 3 * c, "(a/t)d")
                 .Add("softmax probabilities fp32", 4, "(a/t)s")
                 .Add("softmax probabilities in compute dtype", c == 4 ? 0 : c, "(a/t)s")
                 .Add("o_proj input (trained)", full ? c : 0, "(a/t)d");
        }
        else
        {
            Layer.Add("attention q, k, v (kv repeated), output", 4 * c, "(a/t)d")
                 .Add("attention logsumexp fp32", 4, "a/t");
        }
        Layer.Add("MLP input (trained)", full ? c : 0, "h")
             .Add("MLP gate out, silu out, up out", 3 * c, "f/t")
             .Add("down_proj input (trained)", full ? c : 0, "f/t");
        if (request.IsLora) AddAdapters(request, c, eager);

        Checkpoint = new ByteExpression(values).Add("layer input", c, "h");
        BackwardTransient = new ByteExpression(values)
            .Add("gradients of gate, up, silu*up", 3 * c, "f/t")
            .Add("gradient of the residual stream", c, "h");
        Mask = new ByteExpression(values).Add("attention mask row", request.Packing || eager ? c : 0, "s");
        HeadSaved = new ByteExpression(values)
            .Add("final RMSNorm fp32 input", 4, "h")
            .Add("final RMSNorm rstd", 4, "1")
            .Add("final RMSNorm normalized input of the trained weight", full ? c : 0, "h")
            .Add("lm_head input (trained)", full ? c : 0, "h")
            .Add("fp32 log-probabilities", 4, Vocab);
        HeadTransient = new ByteExpression(values).Add("fp32 gradients of log-probabilities and logits", 8, Vocab);
    }

    void AddAdapters(PlanRequest request, int c, bool eager)
    {
        var modules = LinearModule.OfLayer(request.Model).Where(m => request.Lora.Targets.Contains(m.Name)).ToList();
        bool dropout = request.Lora.Dropout > 0;
        var sharedInputs = new HashSet<AdapterInput>();
        foreach (var m in modules)
        {
            var symbol = m.Input switch
            {
                AdapterInput.AttentionOutput => "(a/t)d",
                AdapterInput.MlpProduct => "f/t",
                _ => "h",
            };
            if (dropout)
            {
                Layer.Add($"{m.Name} LoRA dropout output fp32", 4, symbol)
                     .Add($"{m.Name} LoRA dropout mask", 1, symbol);
            }
            else if (c != 4)
            {
                Layer.Add($"{m.Name} LoRA input cast to fp32", 4, symbol);
            }
            else if (sharedInputs.Add(m.Input) && !(m.Input == AdapterInput.AttentionOutput && !eager))
            {
                // fp32 compute: the adapter keeps the very tensor the base reads; count it once per tensor (the fused
                // attention output is already counted as part of attention).
                Layer.Add($"{m.Name} LoRA input (shared)", 4, symbol);
            }
            Layer.Add($"{m.Name} LoRA A output fp32", 4, "r");
        }
    }

    /// <summary>Activation bytes of a stage of <paramref name="layers"/> layers with <paramref name="inFlight"/> micro-batches held.</summary>
    public long StageBytes(long tokens, int layers, int inFlight, bool lastStage, bool recompute)
    {
        long kept = recompute
            ? inFlight * layers * tokens * Checkpoint.BytesPerToken + tokens * Layer.BytesPerToken
            : inFlight * layers * tokens * Layer.BytesPerToken;
        long bytes = kept
                     + tokens * BackwardTransient.BytesPerToken
                     + inFlight * tokens * Mask.BytesPerToken;
        if (lastStage) bytes += inFlight * tokens * HeadSaved.BytesPerToken + tokens * HeadTransient.BytesPerToken;
        return bytes;
    }

    public long StageBytes(long tokens, int layers, int inFlight, bool lastStage) =>
        StageBytes(tokens, layers, inFlight, lastStage, Recompute);

    public ActivationFormula Describe()
    {
        string n(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
        var layer = $"L = {Layer} = {n(Layer.BytesPerToken)} B/token";
        var common = $"T·({BackwardTransient}) backward transients"
                     + (Mask.BytesPerToken > 0 ? $" + k·T·{Mask} mask" : "")
                     + $"; last stage + k·T·({HeadSaved}) + T·{HeadTransient} loss";
        return new ActivationFormula(
            PerLayerPerToken: layer,
            WithRecompute: $"k·n·T·{Checkpoint} layer inputs + T·L one layer recomputed + {common}",
            WithoutRecompute: $"k·n·T·L + {common}",
            Symbols: $"T = micro-batch x seq tokens, n = layers on the stage, k = micro-batches in flight (1F1B: min(p - s, m), GPipe: m), " +
                     $"t = tp = {Tp}, c = {ComputeBytes} (compute dtype bytes), h hidden, a heads, d head_dim, f intermediate, V vocab, s seq, r LoRA rank",
            Recompute: Recompute);
    }
}

/// <summary>The activation formula as the plan prints it.</summary>
public sealed record ActivationFormula(string PerLayerPerToken, string WithRecompute, string WithoutRecompute, string Symbols, bool Recompute)
{
    public string Active => Recompute ? WithRecompute : WithoutRecompute;
}
