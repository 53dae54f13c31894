using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Optim;

/// <summary>The global gradient norm before clipping and the factor the gradients were multiplied by.</summary>
public readonly record struct ClipResult(double TotalNorm, double Coefficient);

/// <summary>
/// Global-norm gradient clipping with <c>torch.nn.utils.clip_grad_norm_</c>'s semantics (norm type 2):
/// <c>total_norm = sqrt(sum of squares of all gradients)</c>, <c>clip_coef = max_norm / (total_norm + 1e-6)</c>, every
/// gradient multiplied by <c>min(clip_coef, 1)</c>. Split in two so that workers owning different parameters can
/// all-reduce (sum) their local squared norms in between:
/// <code>
/// double local = GradientClipper.ComputeLocalSquaredNorm(myParameters);
/// double global = Math.Sqrt(SumOverAllWorkers(local));          // the caller's collective
/// GradientClipper.Clip(myParameters, global, maxNorm);
/// </code>
/// </summary>
/// <remarks>
/// Precision: squares are summed in fp64 (each gradient converted chunk by chunk), so the norm does not depend on how
/// the parameters are split across workers beyond fp64 rounding; torch instead takes fp32 per-tensor norms and an fp32
/// norm of those, so <see cref="ClipResult.TotalNorm"/> agrees with torch's to fp32 rounding (~1e-7 relative), not to
/// the bit. The coefficient is computed in double and applied as an fp32 multiply. When it is clamped to 1 the
/// gradients are left untouched (torch multiplies by 1.0, which changes nothing). A non-finite norm propagates into the
/// gradients as in torch's default (<c>error_if_nonfinite=False</c>): check <see cref="ClipResult.TotalNorm"/>.
/// Parameters without a gradient are skipped, as in torch.
/// </remarks>
public static class GradientClipper
{
    /// <summary>Added to the norm before dividing, as torch does.</summary>
    public const double NormEpsilon = 1e-6;

    // Elements converted to fp64 at a time: bounds the temporary for a large gradient (an 8B model's embedding) to 8 MiB.
    private const long ChunkElements = 1L << 20;

    /// <summary>Sum over the gradients of these parameters of the squared elements, accumulated in fp64.</summary>
    public static double ComputeLocalSquaredNorm(IEnumerable<Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double sum = 0;
        foreach (var parameter in parameters)
        {
            using var perParameter = torch.NewDisposeScope();
            var grad = parameter.grad;
            if (grad is null) continue;
            var flat = grad.detach().reshape(-1);
            var accumulator = torch.zeros([], ScalarType.Float64, grad.device);
            for (long start = 0; start < flat.shape[0]; start += ChunkElements)
            {
                using var chunkScope = torch.NewDisposeScope();
                var chunk = flat.narrow(0, start, Math.Min(ChunkElements, flat.shape[0] - start)).to(ScalarType.Float64);
                accumulator.add_(chunk.mul(chunk).sum());
            }
            sum += accumulator.item<double>();
        }
        return sum;
    }

    /// <summary>
    /// Multiplies every gradient by <c>min(maxNorm / (globalNorm + 1e-6), 1)</c> and returns that factor.
    /// <paramref name="globalNorm"/> is the norm over ALL workers' gradients (the square root of the summed
    /// <see cref="ComputeLocalSquaredNorm"/> values).
    /// </summary>
    public static double Clip(IEnumerable<Tensor> parameters, double globalNorm, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(maxNorm > 0) || double.IsInfinity(maxNorm))
            throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "the maximum norm must be finite and > 0");
        if (globalNorm < 0) throw new ArgumentOutOfRangeException(nameof(globalNorm), globalNorm, "a norm cannot be negative");

        double coefficient = maxNorm / (globalNorm + NormEpsilon);
        double clamped = double.IsNaN(coefficient) ? coefficient : Math.Min(coefficient, 1.0);
        if (clamped == 1.0) return clamped;

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var parameter in parameters)
        {
            using var perParameter = torch.NewDisposeScope();
            parameter.grad?.mul_(clamped);
        }
        return clamped;
    }

    /// <summary>
    /// Both halves in one call. On a single worker leave <paramref name="sumAcrossWorkers"/> null; otherwise it is the
    /// hook that sums a local squared norm over all workers (an all-reduce) and returns the global sum.
    /// </summary>
    public static ClipResult ClipByGlobalNorm(IReadOnlyCollection<Tensor> parameters, double maxNorm,
        Func<double, double>? sumAcrossWorkers = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        double squared = ComputeLocalSquaredNorm(parameters);
        if (sumAcrossWorkers is not null) squared = sumAcrossWorkers(squared);
        double totalNorm = Math.Sqrt(squared);
        return new ClipResult(totalNorm, Clip(parameters, totalNorm, maxNorm));
    }
}
