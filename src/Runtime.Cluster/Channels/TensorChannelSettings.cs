using Akka.Configuration;

namespace Runtime.Cluster.Channels;

/// <summary>What carries collectives of CUDA tensors (point-to-point traffic always goes in-process or over Akka).</summary>
public enum CollectiveTransport
{
    /// <summary>NCCL when the tensors live on a GPU and libnccl.so.2 loads; otherwise Akka.</summary>
    Auto,
    /// <summary>Always the tensor channels (in-process hand-over, Akka remoting between nodes).</summary>
    Akka,
    /// <summary>Always NCCL; fails clearly when libnccl.so.2 is missing or the tensors are not on a GPU.</summary>
    Nccl,
}

/// <summary>How this node sends tensors to other nodes (every node receives both ways).</summary>
public enum RemoteTransport
{
    /// <summary>Chunks as Akka remoting messages, under a credit window (see <see cref="Remote.TensorOutbox"/>).</summary>
    Akka,
    /// <summary>A dedicated TCP connection per node pair (see <see cref="Remote.TcpTensorTransport"/>).</summary>
    Tcp,
}

/// <summary>The <c>runtime.channels</c> section (defaults in <see cref="ChannelsConfig.Hocon"/>).</summary>
public sealed record TensorChannelSettings(
    CollectiveTransport Transport, RemoteTransport Remote, int ChunkSize, int Window, TimeSpan ReceiveTimeout,
    TimeSpan PartialTransferTimeout, string SocketHostname, int SocketPort, TimeSpan ConnectTimeout)
{
    public const string Section = "runtime.channels";

    /// <summary>Bytes a chunk frame adds to its payload are far below this; it keeps chunks under the remoting frame limit.</summary>
    public const int FrameOverhead = 64 * 1024;

    public static TensorChannelSettings Create(Config config)
    {
        var section = config.GetConfig(Section)
            ?? throw new ConfigurationException($"the '{Section}' section is missing; build the ActorSystem's config with ChannelsConfig.WithChannels");
        var transportText = section.GetString("transport", "auto");
        if (!Enum.TryParse<CollectiveTransport>(transportText, ignoreCase: true, out var transport))
            throw new ConfigurationException($"{Section}.transport = '{transportText}'; expected auto, akka or nccl");
        var remoteText = section.GetString("remote", "tcp");
        if (!Enum.TryParse<RemoteTransport>(remoteText, ignoreCase: true, out var remote))
            throw new ConfigurationException($"{Section}.remote = '{remoteText}'; expected tcp or akka");
        long chunk = section.GetByteSize("chunk-size") ?? throw new ConfigurationException($"{Section}.chunk-size is missing");
        if (chunk < 1024 || chunk > 256L * 1024 * 1024)
            throw new ConfigurationException($"{Section}.chunk-size = {chunk} bytes; expected between 1 KiB and 256 MiB");
        int window = section.GetInt("window", 0);
        if (window < 1) throw new ConfigurationException($"{Section}.window = {window}; at least one chunk must be allowed in flight");
        var receive = section.GetTimeSpan("receive-timeout", null, allowInfinite: true);
        var partial = section.GetTimeSpan("partial-transfer-timeout", null, allowInfinite: false);
        if (receive <= TimeSpan.Zero && receive != Timeout.InfiniteTimeSpan)
            throw new ConfigurationException($"{Section}.receive-timeout must be positive or infinite");
        if (partial <= TimeSpan.Zero) throw new ConfigurationException($"{Section}.partial-transfer-timeout must be positive");
        int port = section.GetInt("socket.port", 0);
        if (port is < 0 or > 65535) throw new ConfigurationException($"{Section}.socket.port = {port}; expected 0 (any) to 65535");
        var connect = section.GetTimeSpan("socket.connect-timeout", TimeSpan.FromSeconds(10), allowInfinite: false);
        if (connect <= TimeSpan.Zero) throw new ConfigurationException($"{Section}.socket.connect-timeout must be positive");
        return new TensorChannelSettings(transport, remote, (int)chunk, window, receive, partial,
            section.GetString("socket.hostname", ""), port, connect);
    }
}
