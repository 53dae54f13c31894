using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Optim;

/// <summary>
/// Loss scaling for gradient accumulation, so that one optimizer step sees the gradient of the mean cross entropy over
/// ALL labelled tokens of the step: every micro-batch of every data-parallel replica. HF Trainer does the same with
/// <c>num_items_in_batch</c>: each micro-batch's backward runs on <c>loss_sum / total_tokens</c>, and the gradients
/// accumulate by summation.
/// </summary>
/// <remarks>
/// The total is known before any forward, because the data pipeline knows every micro-batch's labels: sum
/// <see cref="CountLabelledTokens"/> over the step's micro-batches on all replicas (a tiny all-reduce, or the data
/// loader's own bookkeeping) and pass the same total everywhere. The data-parallel gradient all-reduce must then SUM the
/// replicas' gradients, not average them: the division by the token count has already happened.
/// Dividing a per-micro-batch MEAN by the number of micro-batches would be wrong whenever micro-batches hold different
/// numbers of labelled tokens.
/// </remarks>
public static class GradientAccumulation
{
    /// <summary>The ignore index of HF's causal-LM loss: labels with this value carry no loss.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Labelled tokens in <paramref name="targets"/>: the labels the loss is computed against, i.e. AFTER the causal shift
    /// (<c>labels[..., 1:]</c> for HF-style labels), counting those that are not <see cref="IgnoreIndex"/>.
    /// </summary>
    public static long CountLabelledTokens(Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        using var scope = torch.NewDisposeScope();
        return targets.ne(IgnoreIndex).sum().item<long>();
    }

    /// <summary>
    /// The loss to run backward on for one micro-batch: its summed cross entropy (reduction "sum", ignored labels
    /// excluded) divided by the labelled-token count of the whole step. Returns a new tensor in the caller's scope.
    /// </summary>
    public static Tensor ScaleLoss(Tensor summedLoss, long totalLabelledTokens)
    {
        ArgumentNullException.ThrowIfNull(summedLoss);
        if (totalLabelledTokens <= 0)
            throw new ArgumentOutOfRangeException(nameof(totalLabelledTokens), totalLabelledTokens,
                "the step has no labelled tokens: its mean loss and gradient are undefined");
        return summedLoss.div(totalLabelledTokens);
    }

    /// <summary>The step's mean loss (for reporting) from the micro-batches' summed losses.</summary>
    public static double MeanLoss(IEnumerable<double> summedLosses, long totalLabelledTokens)
    {
        ArgumentNullException.ThrowIfNull(summedLosses);
        if (totalLabelledTokens <= 0)
            throw new ArgumentOutOfRangeException(nameof(totalLabelledTokens), totalLabelledTokens, "the step has no labelled tokens");
        return summedLosses.Sum() / totalLabelledTokens;
    }
}
