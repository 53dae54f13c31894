using Runtime.Cluster.Channels;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>Tensors between two ActorSystems over real TCP on 127.0.0.1.</summary>
public abstract class RemoteTransferTests(TwoNodes nodes)
{
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public void ATwentyMegabyteTensorArrivesBitForBit()
    {
        var sender = Worker(0, 0, run: "remote-20mb");
        var receiver = Worker(0, 1, run: "remote-20mb");
        var inbox = nodes.Place(receiver, nodes.ChannelsB);
        using var source = torch.randn(5 * 1024 * 1024); // 20 MiB of float32, 20 chunks of 1 MiB
        var expected = Bytes(source);
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender), source.clone());

        using var received = inbox.Take(Tag(0, sender), Wait);
        Assert.Equal(ScalarType.Float32, received.dtype);
        Assert.Equal(source.shape, received.shape);
        Assert.Equal(expected, Bytes(received));
    }

    [Fact]
    public void BothDirectionsAndSeveralTensorsInterleave()
    {
        var a = Worker(0, 0, run: "remote-both");
        var b = Worker(0, 1, run: "remote-both");
        var inboxA = nodes.Place(a, nodes.ChannelsA);
        var inboxB = nodes.Place(b, nodes.ChannelsB);
        using var scope = torch.NewDisposeScope();
        var forward = Enumerable.Range(0, 5).Select(i => torch.randn(300_000 + i)).ToList();
        var backward = Enumerable.Range(0, 5).Select(i => torch.randn(1000 * i).to(ScalarType.BFloat16)).ToList();
        for (int i = 0; i < 5; i++)
        {
            nodes.ChannelsA.Transport.Send(b, Tag(0, a, microBatch: i), forward[i].clone());
            nodes.ChannelsB.Transport.Send(a, Tag(0, b, TensorKind.Gradient, microBatch: i), backward[i].clone());
        }
        for (int i = 4; i >= 0; i--) // taken in reverse order of sending
        {
            Assert.Equal(Bytes(forward[i]), Bytes(inboxB.Take(Tag(0, a, microBatch: i), Wait)));
            Assert.Equal(Bytes(backward[i]), Bytes(inboxA.Take(Tag(0, b, TensorKind.Gradient, microBatch: i), Wait)));
        }
    }

    [Fact]
    public void StaleAttemptsAreDroppedOnTheReceivingNode()
    {
        var sender = Worker(0, 0, run: "remote-stale");
        var receiver = Worker(0, 1, run: "remote-stale");
        var inbox = nodes.Place(receiver, nodes.ChannelsB);
        nodes.ChannelsB.AdvanceAttempt("remote-stale", 1);
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender, attempt: 0), torch.ones(100_000));
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender, attempt: 1), torch.full([3], 7f));

        using var current = inbox.Take(Tag(0, sender, attempt: 1), Wait);
        Assert.Equal(new[] { 7f, 7f, 7f }, current.data<float>().ToArray());
        // The attempt-0 tensor was sent first on the same connection: it has arrived and was dropped, not kept.
        Assert.Equal(0, inbox.Count);
        Assert.Throws<OperationCanceledException>(() => inbox.Take(Tag(0, sender, attempt: 0), Wait));
    }

    [Fact]
    public void ATensorForAWorkerThatHasNotStartedWaitsForIt()
    {
        var sender = Worker(0, 0, run: "remote-early");
        var receiver = Worker(0, 1, run: "remote-early");
        nodes.ChannelsA.Router.SetRemote(receiver, nodes.ChannelsB.SelfAddress); // placed on B, not yet started there
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender), torch.full([2], 3f));
        var inbox = nodes.ChannelsB.OpenInbox(receiver);
        using var received = inbox.Take(Tag(0, sender), Wait);
        Assert.Equal(new[] { 3f, 3f }, received.data<float>().ToArray());
    }

    [Fact]
    public void TheRoutedTransportHandsLocalReceiversTheObjectItself()
    {
        var sender = Worker(0, 0, run: "remote-local");
        var receiver = Worker(0, 1, run: "remote-local");
        var inbox = nodes.ChannelsA.OpenInbox(receiver);
        var tensor = torch.ones(4);
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender), tensor);
        using var received = inbox.Take(Tag(0, sender), Wait);
        Assert.Same(tensor, received);
    }
}

public sealed class RemoteTransferOverAkkaTests(AkkaNodes nodes) : RemoteTransferTests(nodes), IClassFixture<AkkaNodes>;

public sealed class RemoteTransferOverSocketTests(SocketNodes nodes) : RemoteTransferTests(nodes), IClassFixture<SocketNodes>;
