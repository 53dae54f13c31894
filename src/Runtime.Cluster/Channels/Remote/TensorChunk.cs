namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// One piece of a tensor on its way to another node. The chunk is its own wire frame: it is encoded once, when the
/// sender cuts it from the tensor, and the serializer hands Akka that array as it is; the receiver keeps the array Akka
/// gives it and copies the payload straight into the destination tensor.
/// <code>
/// frame = u8 message (1) | u8 version (1) | i64 transfer id | i32 chunk index | i32 chunk count | i64 byte offset
///       | u8 dtype | u8 rank | rank x i64 dims | tag | destination worker | payload (the rest of the frame)
/// tag = i64 attempt | i64 step | i32 micro-batch | u8 kind | u8 group | i64 sequence | source worker
/// worker = u16 run length | run (UTF-8) | i32 data | i32 stage | i32 tensor
/// </code>
/// All integers little-endian; the payload is the tensor's bytes in row-major order.
/// </summary>
public sealed class TensorChunk : ITensorWireMessage
{
    readonly byte[] _frame;
    readonly int _payloadOffset;

    TensorChunk(TransferHeader header, int index, long byteOffset, byte[] frame, int payloadOffset)
    {
        Header = header;
        Index = index;
        ByteOffset = byteOffset;
        _frame = frame;
        _payloadOffset = payloadOffset;
    }

    public TransferHeader Header { get; }
    public int Index { get; }
    /// <summary>Where the payload goes in the destination tensor's bytes.</summary>
    public long ByteOffset { get; }
    public ReadOnlySpan<byte> Payload => _frame.AsSpan(_payloadOffset);
    public int PayloadLength => _frame.Length - _payloadOffset;

    /// <summary>The encoded frame; the serializer returns it unchanged.</summary>
    internal byte[] Frame => _frame;

    /// <summary>Encodes chunk <paramref name="index"/> of a transfer, copying <paramref name="payload"/> into the frame.</summary>
    public static TensorChunk Create(TransferHeader header, int index, long byteOffset, ReadOnlySpan<byte> payload)
    {
        Validate(header, index, byteOffset, payload.Length);
        int headerSize = HeaderSize(header);
        var frame = GC.AllocateUninitializedArray<byte>(checked(headerSize + payload.Length));
        WriteHeader(frame, header, index, byteOffset);
        payload.CopyTo(frame.AsSpan(headerSize));
        return new TensorChunk(header, index, byteOffset, frame, headerSize);
    }

    /// <summary>Reads a frame written by <see cref="Create"/>; keeps <paramref name="frame"/> as the payload's storage.</summary>
    public static TensorChunk Decode(byte[] frame)
    {
        var (header, index, byteOffset, payloadOffset) = ReadHeader(frame);
        Validate(header, index, byteOffset, frame.Length - payloadOffset);
        return new TensorChunk(header, index, byteOffset, frame, payloadOffset);
    }

    /// <summary>The bytes of a chunk frame before its payload.</summary>
    internal static int HeaderSize(TransferHeader header) =>
        2 + 8 + 4 + 4 + 8 + 1 + 1 + 8 * header.Shape.Count + TensorWire.TagSize(header.Tag) + TensorWire.WorkerIdSize(header.To);

    /// <summary>Writes the frame header of chunk <paramref name="index"/> (<see cref="HeaderSize"/> bytes); the payload follows it.</summary>
    internal static int WriteHeader(Span<byte> destination, TransferHeader header, int index, long byteOffset)
    {
        TensorWire.EnsureLittleEndian();
        var writer = new WireWriter(destination);
        writer.Byte(TensorWire.ChunkMessage);
        writer.Byte(TensorWire.FormatVersion);
        writer.Int64(header.TransferId);
        writer.Int32(index);
        writer.Int32(header.ChunkCount);
        writer.Int64(byteOffset);
        writer.Byte(TensorWire.DTypeCode(header.DType));
        writer.Byte((byte)header.Shape.Count);
        foreach (var dim in header.Shape) writer.Int64(dim);
        writer.Tag(header.Tag);
        writer.Worker(header.To);
        if (writer.Position != HeaderSize(header)) throw new InvalidOperationException($"tensor frame header is {writer.Position} bytes, expected {HeaderSize(header)}");
        return writer.Position;
    }

    /// <summary>Reads a frame header; returns where the payload starts.</summary>
    internal static (TransferHeader Header, int Index, long ByteOffset, int PayloadOffset) ReadHeader(ReadOnlySpan<byte> frame)
    {
        TensorWire.EnsureLittleEndian();
        var reader = new WireReader(frame);
        var message = reader.Byte();
        if (message != TensorWire.ChunkMessage) throw new InvalidDataException($"expected a tensor chunk frame (type {TensorWire.ChunkMessage}), got type {message}");
        var version = reader.Byte();
        if (version != TensorWire.FormatVersion) throw new InvalidDataException($"tensor chunk frame has format version {version}; this node reads version {TensorWire.FormatVersion}");
        long transferId = reader.Int64();
        int index = reader.Int32(), count = reader.Int32();
        long byteOffset = reader.Int64();
        var dtype = TensorWire.DType(reader.Byte());
        var shape = new long[reader.Byte()];
        for (int i = 0; i < shape.Length; i++) shape[i] = reader.Int64();
        var tag = reader.Tag();
        var to = reader.Worker();
        return (new TransferHeader(transferId, to, tag, dtype, shape, count), index, byteOffset, reader.Position);
    }

    internal static void Validate(TransferHeader header, int index, long byteOffset, int payloadLength)
    {
        if (index < 0 || index >= header.ChunkCount)
            throw new InvalidDataException($"chunk {index} of {header} is out of range");
        if (byteOffset < 0 || byteOffset + payloadLength > header.TotalBytes)
            throw new InvalidDataException($"chunk {index} of {header} covers bytes [{byteOffset}, {byteOffset + payloadLength}), outside the tensor");
    }
}

/// <summary>The receiver got chunk <see cref="Index"/> of transfer <see cref="TransferId"/>: the sender may put another chunk on the wire.</summary>
public sealed record ChunkAck(long TransferId, int Index) : ITensorWireMessage
{
    internal byte[] Encode()
    {
        var frame = new byte[2 + 8 + 4];
        var writer = new WireWriter(frame);
        writer.Byte(TensorWire.AckMessage);
        writer.Byte(TensorWire.FormatVersion);
        writer.Int64(TransferId);
        writer.Int32(Index);
        return frame;
    }

    internal static ChunkAck Decode(byte[] frame)
    {
        var reader = new WireReader(frame);
        var message = reader.Byte();
        if (message != TensorWire.AckMessage) throw new InvalidDataException($"expected a chunk ack frame (type {TensorWire.AckMessage}), got type {message}");
        var version = reader.Byte();
        if (version != TensorWire.FormatVersion) throw new InvalidDataException($"chunk ack frame has format version {version}; this node reads version {TensorWire.FormatVersion}");
        return new ChunkAck(reader.Int64(), reader.Int32());
    }
}

/// <summary>Asks a node's tensor endpoint on which port its tensor socket listens.</summary>
public sealed record SocketPortQuery : ITensorWireMessage
{
    public static readonly SocketPortQuery Instance = new();
}

/// <summary>The port of a node's tensor socket (<see cref="TensorSocketListener"/>); 0 when it has none.</summary>
public sealed record SocketPort(int Port) : ITensorWireMessage;
