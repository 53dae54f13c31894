using System.Buffers.Binary;
using Akka.Actor;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Remote;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>The binary frames of the remote path: serializer round trips, the frame layout, chunking and reassembly.</summary>
public sealed class TensorWireTests : IDisposable
{
    readonly ActorSystem _system = ActorSystem.Create("wire", LocalConfig());
    static readonly WorkerId From = Worker(1, 0, 1);
    static readonly WorkerId To = Worker(1, 1, 1);

    public void Dispose() => _system.Dispose();

    /// <summary>Cuts a tensor the way the outbox does, writes each chunk with the bound serializer, reads it back, reassembles.</summary>
    Tensor RoundTrip(Tensor tensor, int chunkSize, Func<IList<byte[]>, IEnumerable<byte[]>>? reorder = null)
    {
        var serialization = _system.Serialization;
        var wire = AkkaRemoteTransport.ToWireTensor(tensor.alias());
        using var outgoing = new OutgoingTransfer(42, To, Tag(3, From, TensorKind.Gradient, attempt: 2, microBatch: 5), wire, chunkSize);
        var frames = new List<byte[]>();
        while (!outgoing.AllFramed)
        {
            var chunk = outgoing.NextChunk();
            var serializer = serialization.FindSerializerFor(chunk);
            Assert.IsType<TensorWireSerializer>(serializer);
            frames.Add(serializer.ToBinary(chunk));
        }
        Assert.True(wire.IsInvalid); // the transfer disposed its tensor after the last chunk
        TensorAssembly? assembly = null;
        try
        {
            foreach (var frame in reorder is null ? frames : reorder(frames))
            {
                var chunk = (TensorChunk)serialization.Deserialize(frame, TensorWireSerializer.Id, manifest: "");
                Assert.Equal(To, chunk.Header.To);
                Assert.Equal(Tag(3, From, TensorKind.Gradient, attempt: 2, microBatch: 5), chunk.Header.Tag);
                assembly ??= TensorAssembly.Start(chunk.Header);
                bool complete = assembly.Add(chunk);
                Assert.Equal(complete, assembly.IsComplete);
            }
            return assembly!.TakeTensor();
        }
        finally
        {
            assembly?.Dispose();
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.Int64)]
    public void RoundTripsEachDTypeBitForBit(ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var source = dtype == ScalarType.Int64
            ? torch.randint(long.MinValue / 2, long.MaxValue / 2, [7, 5, 3], ScalarType.Int64)
            : torch.randn([7, 5, 3]).mul(1000).to(dtype);
        var back = RoundTrip(source, chunkSize: 64);
        Assert.Equal(dtype, back.dtype);
        Assert.Equal(source.shape, back.shape);
        Assert.Equal(Bytes(source), Bytes(back));
    }

    [Fact]
    public void ANonContiguousTensorArrivesContiguousWithTheSameValues()
    {
        using var scope = torch.NewDisposeScope();
        var source = torch.randn([6, 10]).to(ScalarType.BFloat16).t()[.., 1..5];
        Assert.False(source.is_contiguous());
        var back = RoundTrip(source, chunkSize: 16);
        Assert.True(back.is_contiguous());
        Assert.Equal(new long[] { 10, 4 }, back.shape);
        Assert.Equal(Bytes(source), Bytes(back));
    }

    [Fact]
    public void ZeroDimensionalAndEmptyTensorsRoundTrip()
    {
        using var scope = torch.NewDisposeScope();
        var scalar = torch.tensor(3.25f);
        var backScalar = RoundTrip(scalar, chunkSize: 1024);
        Assert.Empty(backScalar.shape);
        Assert.Equal(3.25f, backScalar.item<float>());

        var empty = torch.zeros([4, 0, 3], ScalarType.Float16);
        var backEmpty = RoundTrip(empty, chunkSize: 1024);
        Assert.Equal(new long[] { 4, 0, 3 }, backEmpty.shape);
        Assert.Equal(ScalarType.Float16, backEmpty.dtype);
    }

    [Fact]
    public void ChunksArrivingInAnyOrderReassembleBitForBit()
    {
        using var scope = torch.NewDisposeScope();
        var source = torch.randn([1000, 37]); // 148,000 bytes
        const int chunkSize = 10_000;
        var back = RoundTrip(source, chunkSize, frames =>
        {
            Assert.Equal(15, frames.Count);
            var shuffled = frames.ToArray();
            new Random(7).Shuffle(shuffled);
            Assert.NotEqual(frames, shuffled);
            return shuffled;
        });
        Assert.Equal(Bytes(source), Bytes(back));
    }

    [Fact]
    public void TheFrameIsAHeaderAndTheRawLittleEndianBytes()
    {
        // Written out by hand from the format in TensorChunk's documentation.
        using var tensor = torch.tensor(new[] { 1.5f, -2f });
        var header = new TransferHeader(0x0102030405060708, To, Tag(9, From), ScalarType.Float32, [2], chunkCount: 1);
        var frame = _system.Serialization.FindSerializerForType(typeof(TensorChunk))
            .ToBinary(TensorChunk.Create(header, 0, 0, Bytes(tensor)));
        Assert.Equal(1, frame[0]); // chunk message
        Assert.Equal(1, frame[1]); // format version
        Assert.Equal(0x0102030405060708, BinaryPrimitives.ReadInt64LittleEndian(frame.AsSpan(2)));
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(frame.AsSpan(10)));  // chunk index
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(frame.AsSpan(14)));  // chunk count
        Assert.Equal(0, BinaryPrimitives.ReadInt64LittleEndian(frame.AsSpan(18)));  // byte offset
        Assert.Equal(1, frame[26]);                                                 // dtype code: float32
        Assert.Equal(1, frame[27]);                                                 // rank
        Assert.Equal(2, BinaryPrimitives.ReadInt64LittleEndian(frame.AsSpan(28)));  // shape[0]
        Assert.Equal(new byte[] { 0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x00, 0xC0 }, frame[^8..]); // 1.5f, -2f
        int runBytes = Run.Length;
        int expectedHeader = 36 + (8 + 8 + 4 + 1 + 1 + 8 + 2 + runBytes + 12) + (2 + runBytes + 12);
        Assert.Equal(expectedHeader + 8, frame.Length);
    }

    [Fact]
    public void ChunkAcksRoundTrip()
    {
        var serializer = _system.Serialization.FindSerializerForType(typeof(ChunkAck));
        Assert.IsType<TensorWireSerializer>(serializer);
        var back = serializer.FromBinary(serializer.ToBinary(new ChunkAck(77, 3)), typeof(ChunkAck));
        Assert.Equal(new ChunkAck(77, 3), back);
    }

    [Fact]
    public void SocketPortMessagesRoundTrip()
    {
        foreach (object message in new object[] { SocketPortQuery.Instance, new SocketPort(45123) })
        {
            var serializer = _system.Serialization.FindSerializerFor(message);
            Assert.IsType<TensorWireSerializer>(serializer);
            Assert.Equal(message, serializer.FromBinary(serializer.ToBinary(message), message.GetType()));
        }
    }

    [Fact]
    public void DamagedFramesAreRefusedWithAClearError()
    {
        using var tensor = torch.ones(4);
        var header = new TransferHeader(1, To, Tag(0, From), ScalarType.Float32, [4], chunkCount: 1);
        var frame = TensorChunk.Create(header, 0, 0, Bytes(tensor)).Frame;
        Assert.Contains("ends at byte", Assert.Throws<InvalidDataException>(() => TensorChunk.Decode(frame[..40])).Message);
        var future = (byte[])frame.Clone();
        future[1] = 9;
        Assert.Contains("version 9", Assert.Throws<InvalidDataException>(() => TensorChunk.Decode(future)).Message);
        var padded = frame.Concat(new byte[4]).ToArray(); // payload runs past the tensor's 16 bytes
        Assert.Contains("outside the tensor", Assert.Throws<InvalidDataException>(() => TensorChunk.Decode(padded)).Message);
    }

    [Fact]
    public void ReassemblyRefusesDuplicateAndForeignChunks()
    {
        using var tensor = torch.ones(8);
        var header = new TransferHeader(1, To, Tag(0, From), ScalarType.Float32, [8], chunkCount: 2);
        var bytes = Bytes(tensor);
        using var assembly = TensorAssembly.Start(header);
        Assert.False(assembly.Add(TensorChunk.Create(header, 0, 0, bytes.AsSpan(0, 16))));
        Assert.Throws<InvalidDataException>(() => assembly.Add(TensorChunk.Create(header, 0, 0, bytes.AsSpan(0, 16))));
        var other = new TransferHeader(1, To, Tag(1, From), ScalarType.Float32, [8], chunkCount: 2);
        Assert.Throws<InvalidDataException>(() => assembly.Add(TensorChunk.Create(other, 1, 16, bytes.AsSpan(16, 16))));
        Assert.True(assembly.Add(TensorChunk.Create(header, 1, 16, bytes.AsSpan(16, 16))));
    }

    [Fact]
    public void TensorBytesPointsAtAViewsFirstElement()
    {
        using var scope = torch.NewDisposeScope();
        var rows = torch.arange(20, ScalarType.Int32).reshape(5, 4);
        var view = rows[2..4]; // contiguous, storage offset 8 elements
        Assert.Equal(8, view.storage_offset());
        var span = TensorBytes.CpuSpan(view, 0, 8 * 4);
        Assert.Equal(Enumerable.Range(8, 8), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(span).ToArray());
    }
}
