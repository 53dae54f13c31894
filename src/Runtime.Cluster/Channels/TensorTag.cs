namespace Runtime.Cluster.Channels;

/// <summary>What a tensor is; the receiver asks for it by kind, so a gradient never satisfies a wait for an activation.</summary>
public enum TensorKind : byte
{
    /// <summary>A pipeline stage's output, sent forward to the next stage.</summary>
    Activation = 0,
    /// <summary>The gradient of a stage's input, sent back to the previous stage.</summary>
    Gradient = 1,
    /// <summary>A collective's contribution: the sender's copy of the receiver's segment (reduce-scatter phase).</summary>
    ReduceContribution = 2,
    /// <summary>A collective's result: the sender's reduced segment (all-gather phase).</summary>
    ReduceResult = 3,
    /// <summary>A broadcast from a group's root.</summary>
    Broadcast = 4,
    /// <summary>Bytes that set up a transport, such as an NCCL unique id sent by rank 0.</summary>
    Bootstrap = 5,
    /// <summary>
    /// A collated micro-batch tensor from a data-parallel replica's data loader (token ids, positions, segment ids or
    /// labels; the tag's sequence says which).
    /// </summary>
    Data = 6,
}

/// <summary>
/// Which kind of group a collective runs in. Two workers can share several groups (a tensor-parallel pair is also part
/// of the model-parallel group of its replica), so collective tags carry the group kind to keep them apart.
/// </summary>
public enum GroupKind : byte
{
    /// <summary>Point-to-point traffic (activations, gradients): no group.</summary>
    None = 0,
    /// <summary>The data-parallel replicas of one (stage, tensor rank).</summary>
    DataParallel = 1,
    /// <summary>The tensor-parallel ranks of one (replica, stage).</summary>
    TensorParallel = 2,
    /// <summary>The pipeline stages of one (replica, tensor rank).</summary>
    PipelineParallel = 3,
    /// <summary>Every (stage, tensor rank) of one replica: what a global gradient norm sums over.</summary>
    ModelParallel = 4,
    /// <summary>Every worker of the run.</summary>
    World = 5,
}

/// <summary>
/// The exact identity of one tensor in flight. A receiver blocks for one tag; arrival order does not matter. Tags of an
/// older <see cref="Attempt"/> than the receiver's are stale and dropped: a failed attempt's messages change nothing.
/// </summary>
/// <param name="Attempt">The run's attempt number; bumped by the coordinator after a failure.</param>
/// <param name="Step">The optimizer step.</param>
/// <param name="MicroBatch">The micro-batch within the step, or -1 for per-step traffic (gradient all-reduce).</param>
/// <param name="Kind">What the tensor is.</param>
/// <param name="Source">The worker that sent it (collectives: the contributing member).</param>
/// <param name="Group">The collective's group kind; <see cref="GroupKind.None"/> for point-to-point.</param>
/// <param name="Sequence">Numbers the collectives of one group within a step (0 for point-to-point).</param>
public sealed record TensorTag(
    long Attempt, long Step, int MicroBatch, TensorKind Kind, WorkerId Source,
    GroupKind Group = GroupKind.None, long Sequence = 0)
{
    public string Run => Source.Run;

    public override string ToString() =>
        $"{Kind}(attempt {Attempt}, step {Step}, micro-batch {MicroBatch}, from {Source}" +
        (Group == GroupKind.None ? ")" : $", {Group} #{Sequence})");
}
