using Runtime.Training.Planning;

namespace Runtime.Training.Engine;

/// <summary>What a pipeline stage does next: the forward or the backward of one of its step's micro-batches.</summary>
public enum PipelineOpKind { Forward, Backward }

/// <summary>One operation of a stage's schedule; <see cref="MicroBatch"/> is the replica's local index 0 .. m - 1.</summary>
public readonly record struct PipelineOp(PipelineOpKind Kind, int MicroBatch)
{
    public static PipelineOp F(int microBatch) => new(PipelineOpKind.Forward, microBatch);

    public static PipelineOp B(int microBatch) => new(PipelineOpKind.Backward, microBatch);

    public override string ToString() => (Kind == PipelineOpKind.Forward ? "F" : "B") + MicroBatch;
}

/// <summary>
/// The order in which one pipeline stage runs the forwards and backwards of a step's m micro-batches, for p stages.
/// Each stage follows its own list on its own thread; the lists only need to agree on the order each stage sends and
/// receives, which both schedules below guarantee (every stage runs forwards in order 0..m-1 and backwards in order
/// 0..m-1), so blocking receives with non-blocking sends never deadlock.
/// <list type="bullet">
/// <item><b>GPipe</b>: all m forwards, then all m backwards. Every stage holds all m micro-batches' activations.</item>
/// <item><b>1F1B</b> (PipeDream-flush, as Megatron-LM runs it without interleaving): stage s runs
/// w = min(p - s - 1, m) warm-up forwards, then m - w rounds of one forward and one backward, then the w remaining
/// backwards. Stage s holds at most min(p - s, m) micro-batches: the first stage the most, the last one at a time.</item>
/// </list>
/// Both give the same gradients: each stage accumulates its micro-batches' gradients in the same order (0..m-1).
/// </summary>
public static class PipelineSchedules
{
    public static IReadOnlyList<PipelineOp> For(PipelineSchedule schedule, int stages, int stage, int microBatches) => schedule switch
    {
        PipelineSchedule.OneFOneB => OneFOneB(stages, stage, microBatches),
        PipelineSchedule.GPipe => GPipe(stages, stage, microBatches),
        _ => throw new ArgumentOutOfRangeException(nameof(schedule), schedule, "unknown pipeline schedule"),
    };

    public static IReadOnlyList<PipelineOp> GPipe(int stages, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        var ops = new List<PipelineOp>(2 * microBatches);
        for (int i = 0; i < microBatches; i++) ops.Add(PipelineOp.F(i));
        for (int i = 0; i < microBatches; i++) ops.Add(PipelineOp.B(i));
        return ops;
    }

    public static IReadOnlyList<PipelineOp> OneFOneB(int stages, int stage, int microBatches)
    {
        Check(stages, stage, microBatches);
        int warmup = Math.Min(stages - stage - 1, microBatches);
        var ops = new List<PipelineOp>(2 * microBatches);
        for (int i = 0; i < warmup; i++) ops.Add(PipelineOp.F(i));
        for (int i = 0; i < microBatches - warmup; i++)
        {
            ops.Add(PipelineOp.F(warmup + i));
            ops.Add(PipelineOp.B(i));
        }
        for (int i = microBatches - warmup; i < microBatches; i++) ops.Add(PipelineOp.B(i));
        return ops;
    }

    /// <summary>The most micro-batches a schedule holds between their forward and their backward at any moment.</summary>
    public static int PeakInFlight(IEnumerable<PipelineOp> ops)
    {
        int inFlight = 0, peak = 0;
        foreach (var op in ops)
        {
            inFlight += op.Kind == PipelineOpKind.Forward ? 1 : -1;
            peak = Math.Max(peak, inFlight);
        }
        return peak;
    }

    static void Check(int stages, int stage, int microBatches)
    {
        if (stages < 1) throw new ArgumentOutOfRangeException(nameof(stages), stages, "a pipeline has at least one stage");
        if (stage < 0 || stage >= stages) throw new ArgumentOutOfRangeException(nameof(stage), stage, $"stages are 0..{stages - 1}");
        if (microBatches < 1) throw new ArgumentOutOfRangeException(nameof(microBatches), microBatches, "a step has at least one micro-batch");
    }
}
