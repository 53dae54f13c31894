using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// A tensor being cut into chunks on the sending node. It owns the tensor (contiguous, on CPU) until the last chunk is
/// framed, then disposes it; chunks are cut one at a time, as the flow-control window lets them go, so a large tensor
/// is never copied whole into managed memory.
/// </summary>
internal sealed class OutgoingTransfer : IDisposable
{
    readonly int _chunkSize;
    Tensor? _tensor;

    public OutgoingTransfer(long transferId, WorkerId to, TensorTag tag, Tensor tensor, int chunkSize)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException($"{tag}: only contiguous CPU tensors are cut into chunks", nameof(tensor));
        _chunkSize = chunkSize;
        _tensor = tensor;
        Header = new TransferHeader(transferId, to, tag, tensor.dtype, tensor.shape,
            TransferHeader.ChunkCountFor(TensorBytes.ByteCount(tensor), chunkSize));
    }

    public TransferHeader Header { get; }

    /// <summary>The next chunk to frame; equals the chunk count once all are framed.</summary>
    public int NextIndex { get; private set; }

    public bool AllFramed => NextIndex == Header.ChunkCount;

    /// <summary>Chunks put on the wire whose ack has not come back.</summary>
    public int Unacked { get; set; }

    /// <summary>Frames the next chunk (copying its bytes out of the tensor); disposes the tensor after the last one.</summary>
    public TensorChunk NextChunk()
    {
        if (_tensor is null || AllFramed) throw new InvalidOperationException($"{Header}: every chunk is already framed");
        long offset = (long)NextIndex * _chunkSize;
        int length = (int)Math.Min(_chunkSize, Header.TotalBytes - offset);
        var chunk = TensorChunk.Create(Header, NextIndex, offset, TensorBytes.CpuSpan(_tensor, offset, length));
        NextIndex++;
        if (AllFramed) Dispose();
        return chunk;
    }

    /// <summary>
    /// Writes the next chunk to a tensor socket: <c>i32 header length | i32 payload length | header | payload</c>, the
    /// payload straight from the tensor's memory. <paramref name="scratch"/> holds the prefix and header.
    /// </summary>
    public void WriteNextChunk(Stream stream, byte[] scratch)
    {
        if (_tensor is null || AllFramed) throw new InvalidOperationException($"{Header}: every chunk is already written");
        long offset = (long)NextIndex * _chunkSize;
        int length = (int)Math.Min(_chunkSize, Header.TotalBytes - offset);
        int headerLength = TensorChunk.WriteHeader(scratch.AsSpan(8), Header, NextIndex, offset);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(scratch, headerLength);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(scratch.AsSpan(4), length);
        stream.Write(scratch, 0, 8 + headerLength);
        stream.Write(TensorBytes.CpuSpan(_tensor, offset, length));
        NextIndex++;
        if (AllFramed) Dispose();
    }

    public void Dispose()
    {
        _tensor?.Dispose();
        _tensor = null;
    }
}
