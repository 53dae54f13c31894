using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// A tensor being put back together on the receiving node: allocated once, from the first chunk that arrives (any
/// chunk carries the shape), and filled by copying each chunk's payload into place, in whatever order chunks come.
/// </summary>
internal sealed class TensorAssembly : IDisposable
{
    readonly bool[] _received;
    int _receivedCount;
    long _receivedBytes;
    Tensor? _tensor;

    TensorAssembly(TransferHeader header, Tensor tensor)
    {
        Header = header;
        _tensor = tensor;
        _received = new bool[header.ChunkCount];
    }

    public TransferHeader Header { get; }

    /// <summary>When a chunk last arrived (<see cref="Environment.TickCount64"/>); idle assemblies are swept.</summary>
    public long LastTouched { get; private set; } = Environment.TickCount64;

    public bool IsComplete => _receivedCount == Header.ChunkCount;

    public static TensorAssembly Start(TransferHeader header)
    {
        var tensor = torch.empty(header.Shape.ToArray(), header.DType);
        return new TensorAssembly(header, tensor.DetachFromDisposeScope());
    }

    /// <summary>Copies <paramref name="chunk"/> into place; returns true when it was the last missing one.</summary>
    public bool Add(TensorChunk chunk)
    {
        chunk.Payload.CopyTo(Reserve(chunk.Header, chunk.Index, chunk.ByteOffset, chunk.PayloadLength));
        return Commit(chunk.Index, chunk.PayloadLength);
    }

    /// <summary>
    /// Checks that chunk <paramref name="index"/> belongs here and has not arrived yet, and returns the bytes of the
    /// tensor it fills, so a socket can read the payload straight into place. Follow with <see cref="Commit"/>.
    /// </summary>
    public Span<byte> Reserve(TransferHeader header, int index, long byteOffset, int length)
    {
        if (_tensor is null) throw new ObjectDisposedException(nameof(TensorAssembly));
        if (!header.Matches(Header))
            throw new InvalidDataException($"chunk {index} says '{header}', but the transfer began as '{Header}'");
        if (_received[index])
            throw new InvalidDataException($"chunk {index} of {Header} arrived twice");
        return TensorBytes.CpuSpan(_tensor, byteOffset, length);
    }

    /// <summary>Records that chunk <paramref name="index"/>'s bytes are in place; returns true when it was the last missing one.</summary>
    public bool Commit(int index, int length)
    {
        _received[index] = true;
        _receivedCount++;
        _receivedBytes += length;
        LastTouched = Environment.TickCount64;
        if (IsComplete && _receivedBytes != Header.TotalBytes)
            throw new InvalidDataException($"all {Header.ChunkCount} chunks of {Header} arrived but carried {_receivedBytes} bytes");
        return IsComplete;
    }

    /// <summary>Hands the completed tensor over; the assembly no longer owns it.</summary>
    public Tensor TakeTensor()
    {
        if (!IsComplete || _tensor is null) throw new InvalidOperationException($"{Header} is not complete ({_receivedCount} of {Header.ChunkCount} chunks)");
        var tensor = _tensor;
        _tensor = null;
        return tensor;
    }

    public void Dispose()
    {
        _tensor?.Dispose();
        _tensor = null;
    }
}
