using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Akka.Remote;
using Runtime.Cluster.Channels.Collectives;
using Runtime.Cluster.Channels.Nccl;
using Runtime.Cluster.Channels.Remote;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>The tensor channels of one ActorSystem: <c>TensorChannels.Get(system)</c>.</summary>
public sealed class TensorChannels : ExtensionIdProvider<TensorChannelsExtension>
{
    public override TensorChannelsExtension CreateExtension(ExtendedActorSystem system) => new(system);

    public static new TensorChannelsExtension Get(ActorSystem system) => system.WithExtension<TensorChannelsExtension, TensorChannels>();
}

/// <summary>
/// Everything a node needs to move tensors: the <see cref="Router"/> (filled in by placement), the
/// <see cref="Transport"/> workers send with, the tensor endpoint that receives from other nodes and the outbox that
/// sends to them, and collective groups.
/// </summary>
public sealed class TensorChannelsExtension : IExtension
{
    readonly ExtendedActorSystem _system;

    public TensorChannelsExtension(ExtendedActorSystem system)
    {
        _system = system;
        Settings = TensorChannelSettings.Create(system.Settings.Config);
        EnsureSerializerBound(system);
        EnsureFrameFitsChunk(system, Settings);
        if (Settings.Transport == CollectiveTransport.Nccl) NcclLibrary.EnsureAvailable();
        Router = new TensorRouter(node => system.Provider.ResolveActorRef(TensorEndpoint.PathAt(node)));
        var log = Akka.Event.Logging.GetLogger(system, "runtime.channels");
        if (system.Provider is IRemoteActorRefProvider)
            _listener = new TensorSocketListener(Router, Settings, SocketBindAddress(system, Settings), Settings.SocketPort, log);
        Endpoint = system.SystemActorOf(TensorEndpoint.Props(Router, Settings, _listener?.Port ?? 0), TensorEndpoint.Name);
        Outbox = system.SystemActorOf(TensorOutbox.Props(Settings), TensorOutbox.Name);
        ITensorTransport remote = new AkkaRemoteTransport(Router, Outbox);
        if (Settings.Remote == RemoteTransport.Tcp) remote = _tcp = new TcpTensorTransport(Router, Settings, log);
        Transport = new RoutedTensorTransport(Router, new InProcessTransport(Router), remote);
        system.RegisterOnTermination(() =>
        {
            _tcp?.Dispose();
            _listener?.Dispose();
            Router.Dispose();
        });
    }

    readonly TensorSocketListener? _listener;
    readonly TcpTensorTransport? _tcp;

    public TensorChannelSettings Settings { get; }
    public TensorRouter Router { get; }
    public ITensorTransport Transport { get; }
    public IActorRef Endpoint { get; }
    internal IActorRef Outbox { get; }

    /// <summary>This node's address, which placement gives other nodes for the workers hosted here.</summary>
    public Address SelfAddress => _system.Provider.DefaultAddress;

    /// <summary>The port of this node's tensor socket; 0 when remoting is off.</summary>
    public int SocketPort => _listener?.Port ?? 0;

    /// <summary>The inbox of a worker hosted on this node.</summary>
    public TensorInbox OpenInbox(WorkerId worker) => Router.OpenInbox(worker);

    /// <summary>
    /// Moves every local worker of <paramref name="run"/> to <paramref name="attempt"/> and drops what this node still
    /// has queued for older attempts (inboxes and outgoing transfers): a failed attempt's tensors change nothing.
    /// </summary>
    public void AdvanceAttempt(string run, long attempt)
    {
        foreach (var inbox in Router.LocalInboxes.Where(i => i.Owner.Run == run))
            if (inbox.Attempt < attempt) inbox.Reset(attempt);
        Outbox.Tell(new TensorOutbox.DropStale(run, attempt));
        _tcp?.DropStale(run, attempt);
    }

    /// <summary>
    /// A collective group for <paramref name="self"/> (a worker hosted here). <c>runtime.channels.transport</c> decides:
    /// <c>akka</c> reduces over the channels, <c>nccl</c> through NCCL (CUDA tensors on <paramref name="device"/>), and
    /// <c>auto</c> picks NCCL for a CUDA device when libnccl.so.2 loads. NCCL setup exchanges the unique id under
    /// <paramref name="setupKey"/>, so every member must call this with the same key.
    /// </summary>
    public ICollectiveGroup CreateGroup(GroupKind kind, IReadOnlyList<WorkerId> members, WorkerId self,
        Device? device = null, CollectiveKey setupKey = default, CancellationToken cancellationToken = default)
    {
        bool cuda = device?.type == DeviceType.CUDA;
        bool useNccl = Settings.Transport switch
        {
            CollectiveTransport.Akka => false,
            CollectiveTransport.Nccl => true,
            _ => cuda && NcclLibrary.IsAvailable,
        };
        var inbox = OpenInbox(self);
        if (!useNccl) return new DirectCollectiveGroup(kind, members, self, inbox, Transport, Settings.ReceiveTimeout);
        if (!cuda)
            throw new ConfigurationException(
                $"{TensorChannelSettings.Section}.transport = nccl, but the {kind} group of {self} reduces tensors on {device?.ToString() ?? "the CPU"}; NCCL needs CUDA tensors");
        return NcclCollectiveGroup.Create(kind, members, self, device!, inbox, Transport, setupKey, Settings.ReceiveTimeout, cancellationToken);
    }

    static IPAddress SocketBindAddress(ExtendedActorSystem system, TensorChannelSettings settings)
    {
        var host = settings.SocketHostname;
        if (string.IsNullOrEmpty(host)) host = system.Settings.Config.GetString("akka.remote.dot-netty.tcp.hostname", "");
        if (string.IsNullOrEmpty(host) || host == "0.0.0.0") return IPAddress.Any;
        if (IPAddress.TryParse(host, out var address)) return address;
        var addresses = Dns.GetHostAddresses(host);
        return addresses.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            ?? addresses.FirstOrDefault()
            ?? throw new ConfigurationException($"{TensorChannelSettings.Section}.socket.hostname '{host}' resolves to no address");
    }

    static void EnsureSerializerBound(ExtendedActorSystem system)
    {
        var serializer = system.Serialization.FindSerializerForType(typeof(TensorChunk));
        if (serializer is not TensorWireSerializer)
            throw new ConfigurationException(
                $"tensor chunks would be written by {serializer.GetType().Name}, not {nameof(TensorWireSerializer)}: " +
                "the ActorSystem's config lacks the channels' serializer binding (build it with ChannelsConfig.WithChannels, " +
                "or merge ChannelsConfig.Hocon into reference.conf)");
    }

    static void EnsureFrameFitsChunk(ExtendedActorSystem system, TensorChannelSettings settings)
    {
        if (system.Provider is not IRemoteActorRefProvider) return;
        const string key = "akka.remote.dot-netty.tcp.maximum-frame-size";
        long frame = system.Settings.Config.GetByteSize(key) ?? 128000;
        if (settings.ChunkSize + TensorChannelSettings.FrameOverhead > frame)
            throw new ConfigurationException(
                $"{TensorChannelSettings.Section}.chunk-size = {settings.ChunkSize} bytes does not fit {key} = {frame} bytes " +
                $"(a chunk needs its size + {TensorChannelSettings.FrameOverhead} bytes); raise the frame size or lower the chunk size");
    }
}
