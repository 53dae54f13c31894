namespace Runtime.Model.TensorParallel;

/// <summary>How a linear layer's weight [out, in] is split across the tensor-parallel ranks (Megatron).</summary>
public enum TensorParallelStyle
{
    /// <summary>Every rank holds all of it and computes the full output.</summary>
    Replicated,

    /// <summary>
    /// Output rows split (dim 0): each rank computes its own output columns from the full (replicated) input.
    /// Preceded by a copy region.
    /// </summary>
    ColumnParallel,

    /// <summary>
    /// Input columns split (dim 1): each rank computes a partial sum of the full output from its part of the input.
    /// Followed by a reduce region.
    /// </summary>
    RowParallel,
}
