using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>The summed next-token NLL of a micro-batch (fp32 scalar, differentiable) and how many labels it covers.</summary>
public readonly record struct CausalLmLossSum(Tensor Sum, long Count);

/// <summary>
/// Causal-LM loss as transformers defines it (ForCausalLMLoss): logits in fp32, labels shifted by one (the logits at
/// position t predict labels[t + 1]), label -100 ignored. It returns the SUM over labelled tokens and their COUNT rather
/// than the mean, so gradient accumulation divides by the labelled tokens of the whole accumulated batch, as HF does
/// with num_items_in_batch.
/// <para>
/// The overloads taking a vocabulary-parallel group (<see cref="LlamaSlice.VocabularyParallelGroup"/>) take a
/// vocabulary-parallel slice's LOCAL logits [batch, seq, V/t] (rank r's columns are ids [r V/t, (r+1) V/t)) and compute
/// the same numbers with <see cref="VocabularyParallelCrossEntropy"/> (one all-reduce per call; every rank gets the same
/// sum); with a null group they are the plain ones, so a caller passes the slice's group whatever its layout.
/// </para>
/// </summary>
public static class CausalLmLoss
{
    public const long IgnoreIndex = -100;

    /// <summary>Sum of NLLs and the count of labelled tokens for logits [batch, seq, vocab] and labels [batch, seq].</summary>
    public static CausalLmLossSum Compute(Tensor logits, Tensor labels) => new(SumNll(logits, labels), CountLabelled(labels));

    /// <summary>The summed NLL (fp32 scalar) of the labels after the shift; 0 when nothing is labelled.</summary>
    public static Tensor SumNll(Tensor logits, Tensor labels)
    {
        CheckShapes(logits, labels);
        using var scope = NewDisposeScope();
        long vocab = logits.shape[2], predicted = logits.shape[1] - 1;
        var shiftedLogits = logits.narrow(1, 0, predicted).to(ScalarType.Float32).reshape(-1, vocab);
        var shiftedLabels = labels.narrow(1, 1, predicted).reshape(-1);
        var sum = nn.functional.cross_entropy(shiftedLogits, shiftedLabels, null, IgnoreIndex, nn.Reduction.Sum, 0.0);
        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Compute(Tensor, Tensor)"/> for a slice's logits: the vocab-parallel loss when
    /// <paramref name="vocabularyParallel"/> is set, else the plain one.
    /// </summary>
    public static CausalLmLossSum Compute(Tensor logits, Tensor labels, ITensorParallelGroup? vocabularyParallel) =>
        new(SumNll(logits, labels, vocabularyParallel), CountLabelled(labels));

    /// <summary>
    /// <see cref="SumNll(Tensor, Tensor)"/> for a slice's logits: from the rank's logits [batch, seq, V/t] with the
    /// vocab-parallel cross entropy when <paramref name="vocabularyParallel"/> (size &gt; 1) is set, else the plain one.
    /// </summary>
    public static Tensor SumNll(Tensor logits, Tensor labels, ITensorParallelGroup? vocabularyParallel)
    {
        if (vocabularyParallel is not { Size: > 1 } group) return SumNll(logits, labels);
        CheckShapes(logits, labels);
        using var scope = NewDisposeScope();
        long local = logits.shape[2];
        CheckIds(labels.narrow(1, 1, labels.shape[1] - 1), local * group.Size, ignoreAllowed: true, "label");
        // The last position predicts nothing: label it -100 instead of cutting the logits, so they stay a view.
        var nll = VocabularyParallelCrossEntropy.TokenNll(
            logits.to(ScalarType.Float32).reshape(-1, local), NextTokenLabels(labels).reshape(-1), group);
        return nll.sum().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="TokenLogProbs(Tensor, Tensor)"/> for a slice's logits: from the rank's logits [batch, seq, V/t] when
    /// <paramref name="vocabularyParallel"/> (size &gt; 1) is set (every rank gets the same values), else the plain one.
    /// </summary>
    public static Tensor TokenLogProbs(Tensor logits, Tensor tokens, ITensorParallelGroup? vocabularyParallel)
    {
        if (vocabularyParallel is not { Size: > 1 } group) return TokenLogProbs(logits, tokens);
        CheckShapes(logits, tokens);
        using var scope = NewDisposeScope();
        long local = logits.shape[2], predicted = logits.shape[1] - 1;
        CheckIds(tokens, local * group.Size, ignoreAllowed: false, "token");
        var nll = VocabularyParallelCrossEntropy.TokenNll(
            logits.to(ScalarType.Float32).reshape(-1, local), NextTokenLabels(tokens).reshape(-1), group);
        return nll.neg().view(tokens.shape).narrow(1, 0, predicted).MoveToOuterDisposeScope();
    }

    /// <summary>labels[:, t + 1] at position t, and -100 at the last position.</summary>
    static Tensor NextTokenLabels(Tensor labels)
    {
        var last = full([labels.shape[0], 1], IgnoreIndex, ScalarType.Int64, labels.device);
        return cat([labels.narrow(1, 1, labels.shape[1] - 1), last], 1);
    }

    /// <summary>
    /// The plain loss refuses an id outside the vocabulary; the split one would count it as a logit of 0 on no rank,
    /// so check here.
    /// </summary>
    static void CheckIds(Tensor ids, long vocab, bool ignoreAllowed, string what)
    {
        using var scope = NewDisposeScope();
        var outside = ids.lt(0).logical_or(ids.ge(vocab));
        if (ignoreAllowed) outside = outside.logical_and(ids.ne(IgnoreIndex));
        if (!outside.any().ToBoolean()) return;
        long bad = ids.masked_select(outside)[0].ToInt64();
        throw new ArgumentException(
            $"{what} id {bad} is outside the vocabulary 0 .. {vocab - 1}{(ignoreAllowed ? $" (and is not {IgnoreIndex})" : "")}");
    }

    /// <summary>Labels that count after the shift: those at positions 1.. that are not -100.</summary>
    public static long CountLabelled(Tensor labels)
    {
        if (labels.dim() != 2) throw new ArgumentException($"labels must be [batch, seq]; got [{string.Join(", ", labels.shape)}]");
        using var scope = NewDisposeScope();
        return labels.narrow(1, 1, labels.shape[1] - 1).ne(IgnoreIndex).sum().ToInt64();
    }

    /// <summary>
    /// log p(tokens[:, i + 1] | tokens[:, ..i]) for i = 0 .. seq-2: [batch, seq - 1] in fp32 (what <c>rt score</c> sums).
    /// </summary>
    public static Tensor TokenLogProbs(Tensor logits, Tensor tokens)
    {
        CheckShapes(logits, tokens);
        using var scope = NewDisposeScope();
        long predicted = logits.shape[1] - 1;
        var logProbs = logits.narrow(1, 0, predicted).to(ScalarType.Float32).log_softmax(-1);
        var next = tokens.narrow(1, 1, predicted).unsqueeze(-1);
        return logProbs.gather(-1, next).squeeze(-1).MoveToOuterDisposeScope();
    }

    static void CheckShapes(Tensor logits, Tensor labels)
    {
        if (logits.dim() != 3 || labels.dim() != 2 || logits.shape[0] != labels.shape[0] || logits.shape[1] != labels.shape[1])
            throw new ArgumentException(
                $"logits must be [batch, seq, vocab] and labels [batch, seq]; got [{string.Join(", ", logits.shape)}] and [{string.Join(", ", labels.shape)}]");
        if (labels.dtype != ScalarType.Int64) throw new ArgumentException($"labels must be int64; got {labels.dtype}");
        if (logits.shape[1] < 2) throw new ArgumentException("a sequence needs at least two tokens to have a next-token label");
    }
}
