using Akka.Actor;
using Akka.Serialization;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// Akka serializer for <see cref="ITensorWireMessage"/>s: raw little-endian frames (see <see cref="TensorChunk"/>),
/// never JSON or base64. The first byte of every frame says which message it is, so no manifest travels.
/// Bound in HOCON by <see cref="ChannelsConfig"/>.
/// </summary>
public sealed class TensorWireSerializer(ExtendedActorSystem system) : Serializer(system)
{
    /// <summary>Akka reserves identifiers up to 100; this one is Runtime's and must not change while nodes of two versions talk.</summary>
    public const int Id = 7301;

    public override int Identifier => Id;

    public override bool IncludeManifest => false;

    public override byte[] ToBinary(object obj) => obj switch
    {
        TensorChunk chunk => chunk.Frame,
        ChunkAck ack => ack.Encode(),
        SocketPortQuery => [TensorWire.SocketPortQueryMessage, TensorWire.FormatVersion],
        SocketPort port => Port(port),
        _ => throw new ArgumentException($"{nameof(TensorWireSerializer)} cannot write {obj?.GetType().FullName ?? "null"}", nameof(obj)),
    };

    public override object FromBinary(byte[] bytes, Type type)
    {
        if (bytes.Length == 0) throw new InvalidDataException("empty tensor wire frame");
        return bytes[0] switch
        {
            TensorWire.ChunkMessage => TensorChunk.Decode(bytes),
            TensorWire.AckMessage => ChunkAck.Decode(bytes),
            TensorWire.SocketPortQueryMessage => SocketPortQuery.Instance,
            TensorWire.SocketPortMessage => Port(bytes),
            var other => throw new InvalidDataException($"tensor wire frame starts with unknown message type {other}"),
        };
    }

    static byte[] Port(SocketPort port)
    {
        var frame = new byte[2 + 4];
        var writer = new WireWriter(frame);
        writer.Byte(TensorWire.SocketPortMessage);
        writer.Byte(TensorWire.FormatVersion);
        writer.Int32(port.Port);
        return frame;
    }

    static SocketPort Port(byte[] frame)
    {
        var reader = new WireReader(frame);
        reader.Byte();
        var version = reader.Byte();
        if (version != TensorWire.FormatVersion) throw new InvalidDataException($"socket port frame has format version {version}; this node reads version {TensorWire.FormatVersion}");
        return new SocketPort(reader.Int32());
    }
}
