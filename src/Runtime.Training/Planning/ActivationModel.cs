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
/// <para>Two terms are not per token. Full fine-tuning: the LM head's (or a trained embedding's) weight gradient,
/// 4·(V/t)·h, is made as a new tensor and added to the existing <c>.grad</c> in every micro-batch after the first of
/// an accumulated step and for a tied table's second contribution; in the head's backward it coexists with the fp32
/// logits' gradient (4·V/t a token). That moment outgrows the loss's 12·V/t a token when h &gt; 2·seq (measured with
/// Runtime on CPU: the small preset, seq 256, full fp32). And with <see cref="ActivationEngine.RuntimeCpu"/>, an NF4
/// projection keeps its dequantized weight (compute dtype) for its backward, once per layer whose graph is kept, and a
/// recomputed layer adds the CPU's dequantization and dropout-draw temporaries.</para>
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
    /// <summary>Full fine-tuning: a head or embedding weight gradient made while an older one exists, 4·(V/t)·h bytes.</summary>
    public long WeightGradientTransient { get; }
    /// <summary>Bytes of the fp32 logits' gradient a token (alive while the head's weight gradient is made).</summary>
    public long LogitGradientPerToken { get; }
    /// <summary>Runtime's QLoRA: the dequantized projection weights one layer's graph keeps (0 otherwise).</summary>
    public long DequantizedWeightsPerLayer { get; }
    /// <summary>
    /// Runtime on CPU, while a layer is recomputed: dequantizing the largest NF4 projection (int32 byte indices and fp32
    /// value pairs, 6 bytes an element, beside its compute-dtype result).
    /// </summary>
    public long DequantizationTransient { get; }
    /// <summary>
    /// Runtime on CPU, while a layer is recomputed, per token: libtorch's CPU bernoulli draws the dropout mask of the
    /// widest adapter input through an int32 temporary (4 bytes an element).
    /// </summary>
    public long DropoutDrawPerToken { get; }

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
        LogitGradientPerToken = 4 * values[Vocab];
        WeightGradientTransient = full ? 4 * values[Vocab] * cfg.HiddenSize : 0;
        bool runtime = request.Engine == ActivationEngine.RuntimeCpu;
        var projections = LinearModule.OfLayer(cfg);
        DequantizedWeightsPerLayer = request.Method == FineTuneMethod.Qlora && runtime ? c * projections.Sum(m => m.Parameters / tp) : 0;
        DequantizationTransient = request.Method == FineTuneMethod.Qlora && runtime ? 6 * projections.Max(m => m.Parameters / tp) : 0;
        DropoutDrawPerToken = request.IsLora && request.Lora.Dropout > 0 && runtime
            ? 4 * projections.Where(m => request.Lora.Targets.Contains(m.Name)).Max(m => m.Split == TensorSplit.Row ? m.In / tp : m.In)
            : 0;
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

    /// <summary>
    /// Activation bytes of a stage of <paramref name="layers"/> layers with <paramref name="inFlight"/> micro-batches
    /// held; <paramref name="firstStage"/> says it holds the embedding (full fine-tuning trains it).
    /// <para>Without recompute every layer's saved tensors are alive when the loss runs its backward, so all the terms
    /// add up (an upper bound: a layer's backward transients come after the loss's have gone). With recompute the
    /// backward has phases that do not overlap: the loss and the head (their saved tensors and gradients, freed before
    /// any layer is recomputed), then one recomputed layer at a time (its saved tensors and transients). The stage
    /// holds the checkpoints throughout plus the larger phase. Measured with Runtime on CPU (a layer-dominated model,
    /// vocabulary 512: the sum over-counted by 25%, the larger phase is within 10%).</para>
    /// </summary>
    public long StageBytes(long tokens, int layers, int inFlight, bool lastStage, bool recompute, bool firstStage = false)
    {
        long mask = inFlight * tokens * Mask.BytesPerToken;
        long otherHeads = lastStage ? (inFlight - 1) * tokens * HeadSaved.BytesPerToken : 0;
        long loss = lastStage ? LossPhase(tokens, inFlight) : 0;
        long bytes;
        if (recompute)
        {
            long checkpoints = inFlight * layers * tokens * Checkpoint.BytesPerToken;
            long layerPhase = layers == 0 ? 0
                : otherHeads + tokens * Layer.BytesPerToken + DequantizedWeightsPerLayer + tokens * BackwardTransient.BytesPerToken
                  + DequantizationTransient + tokens * DropoutDrawPerToken;
            bytes = checkpoints + mask + Math.Max(layerPhase, loss);
        }
        else
        {
            bytes = inFlight * layers * (tokens * Layer.BytesPerToken + DequantizedWeightsPerLayer)
                    + tokens * BackwardTransient.BytesPerToken + mask + loss;
        }
        if (firstStage && !lastStage && WeightGradientTransient > 0)
        {
            // The embedding's gradient comes last, when only the other micro-batches' state is left.
            long others = (inFlight - 1) * layers * tokens * (recompute ? Checkpoint.BytesPerToken : Layer.BytesPerToken);
            bytes = Math.Max(bytes, others + mask + WeightGradientTransient);
        }
        return bytes;
    }

    /// <summary>
    /// What a stage holds between its micro-batches' forwards and their backwards (autograd's saved tensors, the
    /// recompute checkpoints, the masks): the part of <see cref="StageBytes"/> that lasts, without the backward's phases.
    /// </summary>
    public long SavedBytes(long tokens, int layers, int inFlight, bool lastStage, bool recompute)
    {
        long perMicroBatch = recompute
            ? layers * tokens * Checkpoint.BytesPerToken
            : layers * (tokens * Layer.BytesPerToken + DequantizedWeightsPerLayer);
        perMicroBatch += tokens * Mask.BytesPerToken + (lastStage ? tokens * HeadSaved.BytesPerToken : 0);
        return inFlight * perMicroBatch;
    }

    /// <summary>
    /// The last stage's loss and head: every micro-batch in flight keeps its log-probabilities; the one running its
    /// backward adds their gradient and the logits' (12·V/t a token at the peak), or, when the head's weight is trained,
    /// later the logits' gradient beside the new weight gradient, whichever is larger.
    /// </summary>
    long LossPhase(long tokens, int inFlight)
    {
        long loss = inFlight * tokens * HeadSaved.BytesPerToken + tokens * HeadTransient.BytesPerToken;
        if (WeightGradientTransient == 0) return loss;
        return Math.Max(loss, (inFlight - 1) * tokens * HeadSaved.BytesPerToken + tokens * LogitGradientPerToken + WeightGradientTransient);
    }

    public long StageBytes(long tokens, int layers, int inFlight, bool lastStage) =>
        StageBytes(tokens, layers, inFlight, lastStage, Recompute);

    public ActivationFormula Describe()
    {
        string n(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
        var layer = $"L = {Layer} = {n(Layer.BytesPerToken)} B/token";
        var common = $"T·({BackwardTransient}) backward transients"
                     + (Mask.BytesPerToken > 0 ? $" + k·T·{Mask} mask" : "")
                     + $"; last stage + k·T·({HeadSaved}) + T·{HeadTransient} loss"
                     + (WeightGradientTransient > 0 ? $" (or, if larger, (k-1)·T·({HeadSaved}) + T·4V/t + 4(V/t)h: the head's weight gradient beside the logits' gradient)" : "");
        var w = DequantizedWeightsPerLayer > 0 ? $"; W = {n(DequantizedWeightsPerLayer)} B, a layer's dequantized NF4 weights (Runtime keeps them for the backward)" : "";
        var cpu = DequantizationTransient + DropoutDrawPerToken > 0
            ? $" + {(DequantizationTransient > 0 ? $"{n(DequantizationTransient)} B dequantizing" : "")}{(DequantizationTransient > 0 && DropoutDrawPerToken > 0 ? " + " : "")}{(DropoutDrawPerToken > 0 ? $"T·{DropoutDrawPerToken} dropout draws" : "")}"
            : "";
        var recomputedLayer = $"T·L{(w.Length > 0 ? " + W" : "")} + T·({BackwardTransient}){cpu}";
        var loss = $"k·T·({HeadSaved}) + T·{HeadTransient}";
        return new ActivationFormula(
            PerLayerPerToken: layer,
            WithRecompute: $"k·n·T·{Checkpoint} layer inputs"
                           + (Mask.BytesPerToken > 0 ? $" + k·T·{Mask} mask" : "")
                           + $" + the larger of one recomputed layer ({recomputedLayer}) and, on the last stage, the loss ({loss}"
                           + (WeightGradientTransient > 0 ? " or (k-1)·T·(head) + T·4V/t + 4(V/t)h, the head's weight gradient beside the logits' gradient" : "")
                           + $"){w}",
            WithoutRecompute: $"k·n·{(w.Length > 0 ? "(T·L + W)" : "T·L")} + {common}{w}",
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
