using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Bench;

/// <summary>
/// Training FLOPs per token of one optimizer step on rows of <paramref name="Sequence"/> tokens, counted matmul by
/// matmul (2 FLOPs a multiply-add), with N = the projections' parameters (every layer) + the LM head's (V x h) and
/// N_A = the LoRA adapters' (r x (in + out) per adapted projection):
/// <list type="bullet">
/// <item>forward: 2 (N + N_A) + attention A = 2 x 2 x layers x seq x (heads x head_dim) / 2 (QK^T and PV, causal:
/// half the scores), the forward bench's count;</item>
/// <item>backward to the activations: 2 (N + N_A) + 2 A (dQ and dK from the scores' gradient, dP and dV);</item>
/// <item>weight gradients, only of what is trained: 2 N_A for LoRA and QLoRA, 2 N for full fine-tuning (the tied
/// embedding's gradient from the lookup is a scatter, not a matmul; the head's use of the same weight is in N);</item>
/// <item>with recompute, the decoder layers' forward again: 2 (N - V h + N_A) + A.</item>
/// </list>
/// So LoRA is 4 N + 6 N_A + 3 A (6 N + 3 A for full). What it leaves out: norms, rotary, SiLU, softmax, the loss,
/// AdamW, QLoRA's NF4 dequantization (twice a step per projection), and the first layer's q/k/v input gradients that
/// autograd skips when the embedding is frozen (0.2% of the LoRA count on the small preset). Those are overheads the
/// step pays, not model FLOPs, so MFU charges them to the implementation.
/// </summary>
internal sealed record TrainingFlops(LlamaConfig Config, FineTuneMethod Method, int Rank, int Sequence, bool Recompute)
{
    /// <summary>Parameters of the decoder layers' projections.</summary>
    public double Projections => (double)Config.NumHiddenLayers * Config.LayerLinearParameters;

    /// <summary>The LM head (V x h), a matmul whether tied to the embedding or not.</summary>
    public double Head => Config.EmbeddingParameters;

    /// <summary>LoRA's A and B on all seven projections of every layer; none for full fine-tuning.</summary>
    public double Adapters => Method == FineTuneMethod.Full
        ? 0
        : (double)Config.NumHiddenLayers * LinearModule.OfLayer(Config).Sum(m => (double)Rank * (m.In + m.Out));

    /// <summary>Causal attention's forward FLOPs per token.</summary>
    public double Attention => 2.0 * 2.0 * Config.NumHiddenLayers * Sequence * Config.NumAttentionHeads * Config.HeadDim / 2.0;

    public double Forward => 2 * (Projections + Head + Adapters) + Attention;

    public double InputGradients => 2 * (Projections + Head + Adapters) + 2 * Attention;

    public double WeightGradients => Method == FineTuneMethod.Full ? 2 * (Projections + Head) : 2 * Adapters;

    public double RecomputedForward => Recompute ? 2 * (Projections + Adapters) + Attention : 0;

    public double PerToken => Forward + InputGradients + WeightGradients + RecomputedForward;

    public string Formula => Method == FineTuneMethod.Full
        ? $"6 N + 3 A{(Recompute ? " + (2 N_layers + A)" : "")}"
        : $"4 N + 6 N_A + 3 A{(Recompute ? " + (2 (N_layers + N_A) + A)" : "")}";
}
