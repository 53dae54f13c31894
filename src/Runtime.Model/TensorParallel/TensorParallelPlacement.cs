using Runtime.Model.IO;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Where one rank's parameter sits in the canonical full tensor, and what its gradient needs before the optimizer step.
/// <list type="bullet">
/// <item>Sharded (<see cref="Slice"/> set): the rank holds that part; its gradient is complete locally. A checkpoint
/// records the slice; the global gradient norm sums every rank's part. Split projections, and on a
/// vocabulary-parallel shard the embedding's and the head's vocabulary rows (dim 0).</item>
/// <item>Replicated, <see cref="GradientNeedsAllReduce"/> false (norms, embedding and LM head unless
/// vocabulary-parallel, every weight without tensor parallelism): every rank holds all of it and computes bitwise the
/// same gradient, because everything feeding it is replicated (the copy regions' backward all-reduced the activation
/// gradients before they reach the norms and the residual stream).</item>
/// <item>Replicated, <see cref="GradientNeedsAllReduce"/> true (LoRA A of a column-parallel projection, LoRA B of a
/// row-parallel one): every rank holds all of it but sees only its own output columns (A) or its own input columns
/// (B), so its gradient is a partial sum: sum it over the tensor-parallel group before clipping and the step
/// (<see cref="TensorParallelPlacements.AllReducePartialGradients"/>).</item>
/// </list>
/// A replicated parameter exists once in the model: a checkpoint should store it from one rank, and the global
/// gradient norm should count it once (<see cref="IsPrimaryCopy"/>).
/// </summary>
public readonly record struct TensorParallelPlacement(long[] FullShape, TensorSlice? Slice, bool GradientNeedsAllReduce)
{
    public static TensorParallelPlacement Sharded(long[] fullShape, TensorSlice slice) => new(fullShape, slice, false);

    public static TensorParallelPlacement Replicated(long[] shape, bool gradientNeedsAllReduce = false) =>
        new(shape, null, gradientNeedsAllReduce);

    public bool IsSharded => Slice is not null;

    /// <summary>The rank's part: the full shape with the slice's length along its dimension.</summary>
    public long[] LocalShape
    {
        get
        {
            if (Slice is not { } s) return FullShape;
            var local = (long[])FullShape.Clone();
            local[s.Dim] = s.Length;
            return local;
        }
    }

    /// <summary>
    /// Whether rank <paramref name="rank"/>'s copy is the one that enters sums over ranks (the global gradient norm) and
    /// checkpoints (which take one copy of each tensor): a part always, a replicated tensor on rank 0 only.
    /// </summary>
    public bool IsPrimaryCopy(int rank) => IsSharded || rank == 0;

    public override string ToString() => Slice is { } s
        ? $"sharded dim {s.Dim} [{s.Start}, {s.Start + s.Length}) of [{string.Join(", ", FullShape)}]"
        : $"replicated [{string.Join(", ", FullShape)}]{(GradientNeedsAllReduce ? ", partial gradient" : "")}";
}
