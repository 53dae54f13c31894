using Runtime.Cluster.Channels;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

public class InProcessTransportTests
{
    static readonly WorkerId Sender = Worker(0, 0);
    static readonly WorkerId Receiver = Worker(0, 1);

    [Fact]
    public void HandsOverTheSameObjectWhichOutlivesTheSendersScope()
    {
        using var router = new TensorRouter();
        var inbox = router.OpenInbox(Receiver);
        var transport = new InProcessTransport(router);
        torch.Tensor sent;
        using (var scope = torch.NewDisposeScope())
        {
            var activation = torch.arange(12, ScalarType.Float32).reshape(3, 4) * 2;
            sent = activation;
            transport.Send(Receiver, Tag(0, Sender), activation);
            Assert.False(scope.Contains(sent)); // ownership left the sender's scope
        }
        Assert.False(sent.IsInvalid);
        using var received = inbox.Take(Tag(0, Sender), TimeSpan.FromSeconds(1));
        Assert.Same(sent, received);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => 2f * i), received.data<float>().ToArray());
    }

    [Fact]
    public void RefusesATensorThatRequiresGrad()
    {
        using var router = new TensorRouter();
        router.OpenInbox(Receiver);
        using var activation = torch.ones(2, requires_grad: true);
        var error = Assert.Throws<ArgumentException>(() => new InProcessTransport(router).Send(Receiver, Tag(0, Sender), activation));
        Assert.Contains("detach", error.Message);
    }

    [Fact]
    public void RefusesAWorkerWithNoRoute()
    {
        using var router = new TensorRouter();
        using var tensor = torch.ones(2);
        var error = Assert.Throws<KeyNotFoundException>(() => new InProcessTransport(router).Send(Receiver, Tag(0, Sender), tensor));
        Assert.Contains(Receiver.ToString(), error.Message);
    }

    [Fact]
    public void AStaleTagsTensorIsDisposedOnArrival()
    {
        using var router = new TensorRouter();
        router.OpenInbox(Receiver).Reset(3);
        var tensor = torch.ones(2);
        new InProcessTransport(router).Send(Receiver, Tag(0, Sender, attempt: 2), tensor);
        Assert.True(tensor.IsInvalid);
    }
}
