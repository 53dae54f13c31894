using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// What every chunk of one tensor transfer repeats (the destination, tag, element type and shape), so the receiver can
/// allocate the tensor from whichever chunk arrives first.
/// </summary>
public sealed class TransferHeader
{
    public TransferHeader(long transferId, WorkerId to, TensorTag tag, ScalarType dtype, IReadOnlyList<long> shape, int chunkCount)
    {
        ArgumentNullException.ThrowIfNull(to);
        ArgumentNullException.ThrowIfNull(tag);
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Count > byte.MaxValue) throw new ArgumentException($"a tensor of {shape.Count} dimensions cannot travel (at most {byte.MaxValue})", nameof(shape));
        long elements = 1;
        foreach (var dim in shape)
        {
            if (dim < 0) throw new InvalidDataException($"tensor shape [{string.Join(", ", shape)}] has a negative dimension");
            elements = checked(elements * dim);
        }
        TotalBytes = checked(elements * TensorWire.ElementSize(dtype));
        if (chunkCount < 1) throw new InvalidDataException($"a transfer needs at least one chunk, the header says {chunkCount}");
        TransferId = transferId;
        To = to;
        Tag = tag;
        DType = dtype;
        Shape = shape.ToArray();
        ChunkCount = chunkCount;
    }

    public long TransferId { get; }
    public WorkerId To { get; }
    public TensorTag Tag { get; }
    public ScalarType DType { get; }
    public IReadOnlyList<long> Shape { get; }
    public int ChunkCount { get; }
    public long TotalBytes { get; }

    /// <summary>How many chunks of at most <paramref name="chunkSize"/> bytes carry <paramref name="totalBytes"/>; an empty tensor still needs one.</summary>
    public static int ChunkCountFor(long totalBytes, int chunkSize)
    {
        if (chunkSize <= 0) throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "must be positive");
        return (int)Math.Max(1, checked((totalBytes + chunkSize - 1) / chunkSize));
    }

    /// <summary>Whether <paramref name="other"/> describes the same transfer, field for field (chunks must agree).</summary>
    public bool Matches(TransferHeader other) =>
        TransferId == other.TransferId && To == other.To && Tag == other.Tag && DType == other.DType &&
        ChunkCount == other.ChunkCount && Shape.SequenceEqual(other.Shape);

    public override string ToString() =>
        $"transfer {TransferId} of {Tag} to {To}: {DType}[{string.Join(", ", Shape)}], {TotalBytes} bytes in {ChunkCount} chunks";
}
