using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Megatron's vocab-parallel cross entropy: the NLL of each token from the LOCAL logits of a vocabulary-parallel head
/// (rank r holds the columns of vocabulary ids [r V/t, (r+1) V/t)), with the sum all-reduce as the only collective
/// (<see cref="ITensorParallelGroup"/> has no max).
/// <list type="number">
/// <item>Each rank computes, per token, the logsumexp of its own columns (fp32) and the logit of the label if the label
/// is one of its ids (else 0).</item>
/// <item>One all-reduce of a [t + 1, tokens] tensor: row r holds rank r's logsumexp (zeros in the other ranks' rows),
/// row t the label logits. Each row has one non-zero contributor, so the sum adds only exact zeros and every rank
/// receives the exact values, whatever order the group adds in.</item>
/// <item>Every rank takes the logsumexp over the t rows itself: the global logsumexp, bitwise the same on every rank
/// (same bits in, same operation). NLL = global logsumexp - label logit; label -100 gives 0.</item>
/// </list>
/// Backward, without communication: d NLL_i / d logit_iv = softmax_iv - [v is the label], where
/// softmax_iv = exp(logit_iv - global logsumexp_i) for the rank's own columns; the head's copy region then sums the
/// ranks' partial gradients of the hidden states.
/// </summary>
public static class VocabularyParallelCrossEntropy
{
    public const long IgnoreIndex = -100;

    /// <summary>
    /// The NLL [tokens] (fp32, differentiable with respect to <paramref name="localLogits"/>) of each label in
    /// <paramref name="labels"/> [tokens] (int64; -100 gives 0) from the rank's logits [tokens, V/t] (fp32), the
    /// columns of vocabulary ids [rank * V/t, (rank + 1) * V/t). Labels are not checked against the vocabulary here; an
    /// id that no rank holds would count its logit as 0.
    /// </summary>
    public static Tensor TokenNll(Tensor localLogits, Tensor labels, ITensorParallelGroup group)
    {
        Check(localLogits, labels, group);
        return VocabularyParallelCrossEntropyFunction.apply(localLogits, labels, group);
    }

    /// <summary>
    /// The logsumexp over the whole vocabulary of each row of the rank's logits [tokens, V/t] (fp32): [tokens], no
    /// gradient, bitwise the same on every rank. The same exchange as <see cref="TokenNll"/>'s (one all-reduce).
    /// </summary>
    public static Tensor GlobalLogSumExp(Tensor localLogits, ITensorParallelGroup group)
    {
        Check(localLogits, null, group);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var noLabel = zeros(localLogits.shape[0], ScalarType.Float32, localLogits.device);
        var (logSumExp, _) = Exchange(localLogits.logsumexp(1), noLabel, group);
        return logSumExp.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// All ranks' per-token logsumexp and label logits in one all-reduce, then the global logsumexp from the t rows;
    /// returns (global logsumexp, label logit), both [tokens], identical on every rank.
    /// </summary>
    internal static (Tensor LogSumExp, Tensor LabelLogit) Exchange(Tensor localLogSumExp, Tensor ownLabelLogit, ITensorParallelGroup group)
    {
        long tokens = localLogSumExp.shape[0];
        var exchange = zeros([group.Size + 1, tokens], ScalarType.Float32, localLogSumExp.device);
        exchange[group.Rank].copy_(localLogSumExp);
        exchange[group.Size].copy_(ownLabelLogit);
        group.AllReduceSumInPlace(exchange);
        return (exchange.narrow(0, 0, group.Size).logsumexp(0), exchange[group.Size]);
    }

    static void Check(Tensor localLogits, Tensor? labels, ITensorParallelGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (localLogits.dim() != 2 || localLogits.dtype != ScalarType.Float32)
            throw new ArgumentException($"vocab-parallel cross entropy takes float32 logits [tokens, vocab / tp]; got {localLogits.dtype} [{string.Join(", ", localLogits.shape)}]");
        if (labels is null) return;
        if (labels.dim() != 1 || labels.dtype != ScalarType.Int64 || labels.shape[0] != localLogits.shape[0])
            throw new ArgumentException(
                $"vocab-parallel cross entropy takes int64 labels [{localLogits.shape[0]}] for logits [{string.Join(", ", localLogits.shape)}]; got {labels.dtype} [{string.Join(", ", labels.shape)}]");
    }
}

/// <summary>The autograd function behind <see cref="VocabularyParallelCrossEntropy.TokenNll"/>: (logits, labels, group).</summary>
public sealed class VocabularyParallelCrossEntropyFunction : SingleTensorFunction<VocabularyParallelCrossEntropyFunction>
{
    public override string Name => nameof(VocabularyParallelCrossEntropyFunction);

    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        if (vars.Length != 3 || vars[0] is not Tensor logits || vars[1] is not Tensor labels || vars[2] is not ITensorParallelGroup group)
            throw new ArgumentException($"{Name} takes (logits, labels, ITensorParallelGroup)");
        using var scope = NewDisposeScope();
        long local = logits.shape[1], start = group.Rank * local;
        var valid = labels.ne(VocabularyParallelCrossEntropy.IgnoreIndex);
        var own = labels.ge(start).logical_and(labels.lt(start + local));
        var ownIndex = (labels - start).masked_fill(own.logical_not(), 0);
        var ownLabelLogit = logits.gather(1, ownIndex.unsqueeze(1)).squeeze(1).masked_fill(own.logical_not(), 0);
        var (logSumExp, labelLogit) = VocabularyParallelCrossEntropy.Exchange(logits.logsumexp(1), ownLabelLogit, group);
        var nll = (logSumExp - labelLogit).masked_fill(valid.logical_not(), 0);

        // Saved as handles the caller's scope frees: autograd takes its own references only after forward returns.
        var toSave = new List<Tensor> { logits, logSumExp, ownIndex, own, valid };
        foreach (var t in toSave.Skip(1)) t.MoveToOuterDisposeScope();
        ctx.save_for_backward(toSave);
        return nll.MoveToOuterDisposeScope();
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        using var scope = NewDisposeScope();
        var saved = ctx.get_saved_variables();
        var (logits, logSumExp, ownIndex, own, valid) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        // d loss / d logit_iv = g_i (softmax_iv - onehot_iv) for labelled tokens, 0 for ignored ones.
        var scale = grad_output.to(ScalarType.Float32).mul(valid);
        var grad = (logits - logSumExp.unsqueeze(1)).exp_().mul_(scale.unsqueeze(1));
        grad.scatter_add_(1, ownIndex.unsqueeze(1), scale.mul(own).neg_().unsqueeze(1));
        return [grad.MoveToOuterDisposeScope(), null!, null!];
    }
}
