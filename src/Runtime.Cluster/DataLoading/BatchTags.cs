using Runtime.Cluster.Channels;

namespace Runtime.Cluster.DataLoading;

/// <summary>Which tensor of a collated micro-batch a <see cref="TensorKind.Data"/> tag carries (its sequence number).</summary>
public enum BatchPart
{
    /// <summary>Token ids [rows, width], to stage 0.</summary>
    InputIds = 0,
    /// <summary>Positions [rows, width], to every stage (each builds its own attention context).</summary>
    Positions = 1,
    /// <summary>Segment ids of packed rows [rows, width], to every stage; not sent for unpacked data.</summary>
    SegmentIds = 2,
    /// <summary>Labels [rows, width], to the last stage.</summary>
    Labels = 3,
}

/// <summary>
/// Tags of the tensors a data loader sends. The loader speaks for its replica as the replica's first worker (stage 0,
/// tensor rank 0), its host; the micro-batch index is the global one (j), the step the optimizer step (1-based).
/// </summary>
public static class BatchTags
{
    public static TensorTag For(long attempt, long step, int microBatch, BatchPart part, string runId, int replica) =>
        new(attempt, step, microBatch, TensorKind.Data, Source(runId, replica), GroupKind.None, (long)part);

    /// <summary>Whose name a replica's loader sends under.</summary>
    public static WorkerId Source(string runId, int replica) => new(runId, replica, 0, 0);
}
