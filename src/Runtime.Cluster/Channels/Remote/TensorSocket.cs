using System.Buffers.Binary;

namespace Runtime.Cluster.Channels.Remote;

/// <summary>
/// The tensor socket protocol: a connection opens with <see cref="Preamble"/>, then carries chunk frames
/// <c>i32 header length | i32 payload length | header | payload</c> (the header as in <see cref="TensorChunk"/>, the
/// payload the tensor's raw bytes), little-endian, one way only. Nothing else travels on it: acknowledgements and
/// flow control are TCP's own.
/// </summary>
internal static class TensorSocket
{
    /// <summary>"RTS" and the format version: a stray connection fails at once instead of being read as sizes.</summary>
    public static readonly byte[] Preamble = [(byte)'R', (byte)'T', (byte)'S', TensorWire.FormatVersion];

    public const int MaxHeaderLength = 64 * 1024;

    /// <summary>Room for the length prefix and any header.</summary>
    public const int ScratchLength = 8 + MaxHeaderLength;

    public static void ReadPreamble(Stream stream)
    {
        Span<byte> preamble = stackalloc byte[4];
        stream.ReadExactly(preamble);
        if (!preamble.SequenceEqual(Preamble))
            throw new InvalidDataException($"not a tensor socket connection (it began with {Convert.ToHexString(preamble)}, expected {Convert.ToHexString(Preamble)})");
    }

    /// <summary>Reads one frame's lengths; false at a clean end of stream.</summary>
    public static bool TryReadLengths(Stream stream, Span<byte> prefix, out int headerLength, out int payloadLength)
    {
        headerLength = payloadLength = 0;
        int read = stream.ReadAtLeast(prefix[..8], 8, throwOnEndOfStream: false);
        if (read == 0) return false;
        if (read < 8) throw new EndOfStreamException("tensor socket closed in the middle of a frame prefix");
        headerLength = BinaryPrimitives.ReadInt32LittleEndian(prefix);
        payloadLength = BinaryPrimitives.ReadInt32LittleEndian(prefix[4..]);
        if (headerLength <= 0 || headerLength > MaxHeaderLength || payloadLength < 0)
            throw new InvalidDataException($"tensor socket frame announces a {headerLength}-byte header and a {payloadLength}-byte payload");
        return true;
    }
}
