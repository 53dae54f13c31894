using System.Net;
using System.Net.Sockets;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Remote;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>The tensor socket beyond the happy path shared with the Akka path (see <see cref="RemoteTransferTests"/>).</summary>
public sealed class TensorSocketTests(SocketNodes nodes) : IClassFixture<SocketNodes>
{
    [Fact]
    public async Task TheEndpointTellsSendersItsSocketPort()
    {
        Assert.NotEqual(0, nodes.ChannelsB.SocketPort);
        var endpoint = ((Akka.Actor.ExtendedActorSystem)nodes.A).Provider.ResolveActorRef(TensorEndpoint.PathAt(nodes.ChannelsB.SelfAddress));
        var answer = await Akka.Actor.Futures.Ask<SocketPort>(endpoint, SocketPortQuery.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal(nodes.ChannelsB.SocketPort, answer.Port);
    }

    [Fact]
    public void AStrayConnectionIsRefusedAndTheSocketKeepsWorking()
    {
        using (var stray = new TcpClient())
        {
            stray.Connect(IPAddress.Loopback, nodes.ChannelsB.SocketPort);
            stray.GetStream().Write("GET / HTTP/1.1\r\n\r\n"u8);
            // The listener reads "GET " as a preamble, refuses it and closes the connection.
            var buffer = new byte[16];
            stray.ReceiveTimeout = 10_000;
            Assert.Equal(0, stray.GetStream().Read(buffer));
        }
        var receiver = PlaceRemote("socket-stray");
        var sender = Worker(0, 0, run: "socket-stray");
        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender), torch.full([3], 2f));
        using var received = nodes.ChannelsB.OpenInbox(receiver).Take(Tag(0, sender), TimeSpan.FromSeconds(30));
        Assert.Equal(new[] { 2f, 2f, 2f }, received.data<float>().ToArray());
    }

    [Fact]
    public void DroppingAStaleAttemptStopsTensorsStillQueued()
    {
        var receiver = PlaceRemote("socket-drop");
        var sender = Worker(0, 0, run: "socket-drop");
        var inbox = nodes.ChannelsB.OpenInbox(receiver); // stays at attempt 0: it would keep whatever arrives
        // 30 tensors of 4 MiB go out chunk by chunk in turn, so none is complete a moment after they are queued.
        var queued = Enumerable.Range(0, 30).Select(_ => torch.zeros(1024 * 1024).DetachFromDisposeScope()).ToList();
        for (int i = 0; i < queued.Count; i++)
            nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender, microBatch: i), queued[i]);
        nodes.ChannelsA.AdvanceAttempt("socket-drop", 1);
        Assert.All(queued, t => Assert.True(WaitUntilDisposed(t)));

        nodes.ChannelsA.Transport.Send(receiver, Tag(0, sender, attempt: 1), torch.ones(2));
        using var fresh = inbox.Take(Tag(0, sender, attempt: 1), TimeSpan.FromSeconds(60));
        Assert.Equal(2, fresh.numel());
        Assert.True(inbox.Count < queued.Count, $"all {queued.Count} stale tensors arrived although the sender dropped them");
    }

    static bool WaitUntilDisposed(torch.Tensor tensor)
    {
        // A tensor already on the wire is disposed by the writer once its last chunk is out.
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!tensor.IsInvalid && DateTime.UtcNow < until) Thread.Sleep(10);
        return tensor.IsInvalid;
    }

    WorkerId PlaceRemote(string run)
    {
        var receiver = Worker(0, 1, run: run);
        nodes.ChannelsA.Router.SetRemote(receiver, nodes.ChannelsB.SelfAddress);
        return receiver;
    }
}
