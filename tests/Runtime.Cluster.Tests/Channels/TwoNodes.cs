using Akka.Actor;
using Runtime.Cluster.Channels;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>
/// Two ActorSystems talking Akka remoting over 127.0.0.1 TCP, each with its tensor channels; tensors between them go
/// the way <paramref name="remote"/> says (runtime.channels.remote).
/// </summary>
public class TwoNodes(string remote) : IDisposable
{
    public string Remote { get; } = remote;
    public ActorSystem A { get; } = ChannelTestKit.RemoteSystem("node-a", $"runtime.channels.remote = {remote}");
    public ActorSystem B { get; } = ChannelTestKit.RemoteSystem("node-b", $"runtime.channels.remote = {remote}");
    public TensorChannelsExtension ChannelsA => TensorChannels.Get(A);
    public TensorChannelsExtension ChannelsB => TensorChannels.Get(B);

    /// <summary>Hosts <paramref name="worker"/> on <paramref name="host"/> and tells the other node where it is.</summary>
    public TensorInbox Place(WorkerId worker, TensorChannelsExtension host)
    {
        var other = ReferenceEquals(host, ChannelsA) ? ChannelsB : ChannelsA;
        other.Router.SetRemote(worker, host.SelfAddress);
        return host.OpenInbox(worker);
    }

    public void Dispose()
    {
        Task.WaitAll(A.Terminate(), B.Terminate());
        GC.SuppressFinalize(this);
    }
}

/// <summary>Tensors between the nodes as Akka remoting messages.</summary>
public sealed class AkkaNodes() : TwoNodes("akka");

/// <summary>Tensors between the nodes over tensor sockets.</summary>
public sealed class SocketNodes() : TwoNodes("tcp");
