namespace Runtime.Training.Data;

/// <summary>
/// How a step's examples are split: <see cref="GlobalBatch"/> = micro-batch size x gradient accumulation x data
/// parallel. The sampler's answers depend on the layout only through the global batch and the micro-batch size, so
/// layouts that agree on both (e.g. 4x1 and 2x2 and 1x4 of accumulation x replicas) see the same micro-batches.
/// </summary>
public readonly record struct BatchLayout
{
    public BatchLayout(int microBatchSize, int gradientAccumulation, int dataParallel)
    {
        if (microBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(microBatchSize), microBatchSize, "must be at least 1");
        if (gradientAccumulation < 1) throw new ArgumentOutOfRangeException(nameof(gradientAccumulation), gradientAccumulation, "must be at least 1");
        if (dataParallel < 1) throw new ArgumentOutOfRangeException(nameof(dataParallel), dataParallel, "must be at least 1");
        MicroBatchSize = microBatchSize;
        GradientAccumulation = gradientAccumulation;
        DataParallel = dataParallel;
    }

    public int MicroBatchSize { get; }

    public int GradientAccumulation { get; }

    public int DataParallel { get; }

    /// <summary>Micro-batches in a step, over all replicas.</summary>
    public int MicroBatchesPerStep => GradientAccumulation * DataParallel;

    public int GlobalBatch => MicroBatchSize * GradientAccumulation * DataParallel;

    public override string ToString() => $"micro-batch {MicroBatchSize} x accumulation {GradientAccumulation} x data-parallel {DataParallel}";
}

/// <summary>
/// Global micro-batch <see cref="Index"/> (j) of a step: the examples at positions FirstPosition .. FirstPosition +
/// micro-batch size - 1. Data-parallel replica d runs the micro-batches with j % dp == d, in increasing j.
/// </summary>
public sealed record GlobalMicroBatch(int Index, long FirstPosition, int[] Examples);

/// <summary>
/// One optimizer step: positions [StartPosition, EndPosition) split into global micro-batches. The run's data state
/// after the step is <see cref="EndPosition"/>.
/// </summary>
public sealed record StepPlan(long StartPosition, BatchLayout Layout, IReadOnlyList<GlobalMicroBatch> MicroBatches)
{
    public long EndPosition => StartPosition + Layout.GlobalBatch;

    /// <summary>The micro-batches replica <paramref name="replica"/> runs: those with j % dp == replica, in order of j.</summary>
    public IReadOnlyList<GlobalMicroBatch> ForReplica(int replica)
    {
        if ((uint)replica >= (uint)Layout.DataParallel)
            throw new ArgumentOutOfRangeException(nameof(replica), replica, $"replicas are 0..{Layout.DataParallel - 1}");
        return MicroBatches.Where(m => m.Index % Layout.DataParallel == replica).ToArray();
    }

    public IEnumerable<int> Examples => MicroBatches.SelectMany(m => m.Examples);
}
