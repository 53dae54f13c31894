using Akka.Actor;
using Runtime.Cluster.Channels;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>Two ActorSystems talking Akka remoting over 127.0.0.1 TCP, each with its tensor channels.</summary>
public sealed class TwoNodes : IDisposable
{
    public TwoNodes()
    {
        A = ChannelTestKit.RemoteSystem("node-a");
        B = ChannelTestKit.RemoteSystem("node-b");
        ChannelsA = TensorChannels.Get(A);
        ChannelsB = TensorChannels.Get(B);
    }

    public ActorSystem A { get; }
    public ActorSystem B { get; }
    public TensorChannelsExtension ChannelsA { get; }
    public TensorChannelsExtension ChannelsB { get; }

    /// <summary>Hosts <paramref name="worker"/> on <paramref name="host"/> and tells the other node where it is.</summary>
    public TensorInbox Place(WorkerId worker, TensorChannelsExtension host)
    {
        var other = host == ChannelsA ? ChannelsB : ChannelsA;
        other.Router.SetRemote(worker, host.SelfAddress);
        return host.OpenInbox(worker);
    }

    public void Dispose()
    {
        Task.WaitAll(A.Terminate(), B.Terminate());
    }
}
