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
