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
        _ => throw new ArgumentException($"{nameof(TensorWireSerializer)} cannot write {obj?.GetType().FullName ?? "null"}", nameof(obj)),
    };

    public override object FromBinary(byte[] bytes, Type type)
    {
        if (bytes.Length == 0) throw new InvalidDataException("empty tensor wire frame");
        return bytes[0] switch
        {
            TensorWire.ChunkMessage => TensorChunk.Decode(bytes),
            TensorWire.AckMessage => ChunkAck.Decode(bytes),
            var other => throw new InvalidDataException($"tensor wire frame starts with unknown message type {other}"),
        };
    }
}
