using Akka.Actor;
using Akka.TestKit.Xunit2;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Remote;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>The sender's credit window, with a test probe standing in for the remote tensor endpoint.</summary>
public sealed class TensorOutboxTests() : TestKit(LocalConfig("runtime.channels { chunk-size = 1024b, window = 2 }"))
{
    static readonly WorkerId From = Worker(0, 0);
    static readonly WorkerId To = Worker(0, 1);
    static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);

    IActorRef StartOutbox() => Sys.ActorOf(TensorOutbox.Props(TensorChannelSettings.Create(Sys.Settings.Config)));

    static torch.Tensor Floats(int count) => torch.zeros(count).DetachFromDisposeScope(); // 4 bytes each

    [Fact]
    public void AtMostWindowChunksAreUnacknowledged()
    {
        var outbox = StartOutbox();
        var endpoint = CreateTestProbe();
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(0, From), Floats(2048))); // 8 KiB: 8 chunks

        var first = endpoint.ExpectMsg<TensorChunk>();
        var second = endpoint.ExpectMsg<TensorChunk>();
        Assert.Equal(new[] { 0, 1 }, new[] { first.Index, second.Index });
        Assert.Equal(8, first.Header.ChunkCount);
        endpoint.ExpectNoMsg(Quiet);

        endpoint.Send(outbox, new ChunkAck(first.Header.TransferId, 0));
        Assert.Equal(2, endpoint.ExpectMsg<TensorChunk>().Index);
        endpoint.ExpectNoMsg(Quiet);
    }

    [Fact]
    public void ASmallTensorDoesNotWaitForABigOneToFinish()
    {
        var outbox = StartOutbox();
        var endpoint = CreateTestProbe();
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(0, From), Floats(2048)));
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(1, From), Floats(1)));
        var arrived = new List<TensorChunk>();
        while (arrived.Count < 9)
        {
            var chunk = endpoint.ExpectMsg<TensorChunk>();
            arrived.Add(chunk);
            endpoint.Send(outbox, new ChunkAck(chunk.Header.TransferId, chunk.Index));
        }
        int small = arrived.FindIndex(c => c.Header.Tag.Step == 1);
        Assert.InRange(small, 0, 3); // took its turn after at most a couple of the big tensor's 8 chunks
    }

    [Fact]
    public void DroppingAStaleAttemptDisposesItsTensorAndReturnsItsCredits()
    {
        var outbox = StartOutbox();
        var endpoint = CreateTestProbe();
        var stale = Floats(2048);
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(0, From, attempt: 0), stale));
        var old = endpoint.ExpectMsg<TensorChunk>();
        endpoint.ExpectMsg<TensorChunk>();

        outbox.Tell(new TensorOutbox.DropStale(Run, 1));
        AwaitAssert(() => Assert.True(stale.IsInvalid));
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(0, From, attempt: 1), Floats(2048)));
        // Both credits came back although the stale chunks were never acknowledged.
        Assert.All(new[] { endpoint.ExpectMsg<TensorChunk>(), endpoint.ExpectMsg<TensorChunk>() }, c => Assert.Equal(1, c.Header.Tag.Attempt));
        endpoint.Send(outbox, new ChunkAck(old.Header.TransferId, 0)); // a late ack of the dropped transfer buys nothing
        endpoint.ExpectNoMsg(Quiet);
    }

    [Fact]
    public void AnEndpointThatDiesTakesItsQueuedTransfersWithIt()
    {
        var outbox = StartOutbox();
        var endpoint = CreateTestProbe();
        var tensor = Floats(2048);
        outbox.Tell(new TensorOutbox.Enqueue(endpoint.Ref, To, Tag(0, From), tensor));
        endpoint.ExpectMsg<TensorChunk>();
        Sys.Stop(endpoint.Ref);
        AwaitAssert(() => Assert.True(tensor.IsInvalid));
    }
}
