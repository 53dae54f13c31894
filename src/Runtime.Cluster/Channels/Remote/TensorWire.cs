using System.Buffers.Binary;
using System.Text;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Marks the messages <see cref="TensorWireSerializer"/> writes; the HOCON binding names this interface, so every
/// message of the tensor wire protocol is binary and none falls through to JSON.
/// </summary>
public interface ITensorWireMessage;

/// <summary>
/// Little-endian primitives of the tensor wire format and its element types. The codes are this format's own, not
/// TorchSharp's enum values, so a TorchSharp upgrade cannot silently change what the bytes mean.
/// </summary>
internal static class TensorWire
{
    public const byte FormatVersion = 1;
    public const byte ChunkMessage = 1;
    public const byte AckMessage = 2;
    public const byte SocketPortQueryMessage = 3;
    public const byte SocketPortMessage = 4;

    public static byte DTypeCode(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 1,
        ScalarType.Float64 => 2,
        ScalarType.Float16 => 3,
        ScalarType.BFloat16 => 4,
        ScalarType.Int64 => 5,
        ScalarType.Int32 => 6,
        ScalarType.Int16 => 7,
        ScalarType.Int8 => 8,
        ScalarType.Byte => 9,
        ScalarType.Bool => 10,
        _ => throw new NotSupportedException($"tensors of {dtype} cannot travel between nodes"),
    };

    public static ScalarType DType(byte code) => code switch
    {
        1 => ScalarType.Float32,
        2 => ScalarType.Float64,
        3 => ScalarType.Float16,
        4 => ScalarType.BFloat16,
        5 => ScalarType.Int64,
        6 => ScalarType.Int32,
        7 => ScalarType.Int16,
        8 => ScalarType.Int8,
        9 => ScalarType.Byte,
        10 => ScalarType.Bool,
        _ => throw new InvalidDataException($"tensor frame names unknown element type code {code}"),
    };

    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"tensors of {dtype} cannot travel between nodes"),
    };

    public static void EnsureLittleEndian()
    {
        // Payloads are the tensor's bytes as they lie in memory; the format says little-endian.
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("the tensor wire format carries raw little-endian bytes; this machine is big-endian");
    }

    public static int WorkerIdSize(WorkerId id) => 2 + Encoding.UTF8.GetByteCount(id.Run) + 12;

    public static int TagSize(TensorTag tag) => 8 + 8 + 4 + 1 + 1 + 8 + WorkerIdSize(tag.Source);
}

/// <summary>Writes the wire format's fields one after another.</summary>
internal ref struct WireWriter(Span<byte> buffer)
{
    readonly Span<byte> _buffer = buffer;
    int _position;

    public readonly int Position => _position;

    public void Byte(byte value) => _buffer[_position++] = value;
    public void Int32(int value) { BinaryPrimitives.WriteInt32LittleEndian(_buffer[_position..], value); _position += 4; }
    public void Int64(long value) { BinaryPrimitives.WriteInt64LittleEndian(_buffer[_position..], value); _position += 8; }

    public void Worker(WorkerId id)
    {
        int length = Encoding.UTF8.GetBytes(id.Run, _buffer[(_position + 2)..]);
        if (length > ushort.MaxValue) throw new ArgumentException($"run id '{id.Run}' is longer than {ushort.MaxValue} bytes");
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer[_position..], (ushort)length);
        _position += 2 + length;
        Int32(id.Data);
        Int32(id.Stage);
        Int32(id.Tensor);
    }

    public void Tag(TensorTag tag)
    {
        Int64(tag.Attempt);
        Int64(tag.Step);
        Int32(tag.MicroBatch);
        Byte((byte)tag.Kind);
        Byte((byte)tag.Group);
        Int64(tag.Sequence);
        Worker(tag.Source);
    }
}

/// <summary>Reads the wire format's fields, failing with the offset when the frame is cut short.</summary>
internal ref struct WireReader(ReadOnlySpan<byte> buffer)
{
    readonly ReadOnlySpan<byte> _buffer = buffer;
    int _position;

    public readonly int Position => _position;

    public byte Byte() { Need(1); return _buffer[_position++]; }
    public int Int32() { Need(4); var v = BinaryPrimitives.ReadInt32LittleEndian(_buffer[_position..]); _position += 4; return v; }
    public long Int64() { Need(8); var v = BinaryPrimitives.ReadInt64LittleEndian(_buffer[_position..]); _position += 8; return v; }

    public WorkerId Worker()
    {
        Need(2);
        int length = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[_position..]);
        _position += 2;
        Need(length);
        var run = Encoding.UTF8.GetString(_buffer.Slice(_position, length));
        _position += length;
        return new WorkerId(run, Int32(), Int32(), Int32());
    }

    public TensorTag Tag()
    {
        long attempt = Int64(), step = Int64();
        int microBatch = Int32();
        var kind = (TensorKind)Byte();
        var group = (GroupKind)Byte();
        if (!Enum.IsDefined(kind)) throw new InvalidDataException($"tensor frame names unknown tensor kind {(byte)kind}");
        if (!Enum.IsDefined(group)) throw new InvalidDataException($"tensor frame names unknown group kind {(byte)group}");
        long sequence = Int64();
        return new TensorTag(attempt, step, microBatch, kind, Worker(), group, sequence);
    }

    readonly void Need(int count)
    {
        if (_position + count > _buffer.Length)
            throw new InvalidDataException($"tensor frame ends at byte {_buffer.Length}, but a field at byte {_position} needs {count} more");
    }
}
