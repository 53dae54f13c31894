using Akka.Configuration;

namespace Runtime.Cluster.Channels;

/// <summary>
/// The HOCON the tensor channels need: the binary serializer binding, remoting frame and buffer sizes that fit a chunk,
/// and <c>runtime.channels</c> defaults. Runtime's reference.conf holds the same settings (a node gets them from
/// there); <see cref="WithChannels"/> is for ActorSystems built without reference.conf (the channels' own tests,
/// benchmarks). ReferenceConfigTests checks the two agree.
/// </summary>
public static class ChannelsConfig
{
    public const string Hocon = """
        akka.actor {
          serializers {
            runtime-tensor = "Runtime.Cluster.Channels.Remote.TensorWireSerializer, Runtime.Cluster"
          }
          serialization-bindings {
            "Runtime.Cluster.Channels.Remote.ITensorWireMessage, Runtime.Cluster" = runtime-tensor
          }
        }

        # A tensor travels as chunks of runtime.channels.chunk-size bytes plus a header of about 100 bytes; Akka's
        # default frame limit (128000 b) would drop them (OversizedPayloadException). The frame limit leaves room for
        # chunks up to 4 MiB - 64 KiB. Socket buffers: 0b lets Linux autotune (up to net.ipv4.tcp_wmem/tcp_rmem max);
        # a fixed size turns autotuning off and is capped by net.core.wmem_max/rmem_max.
        akka.remote.dot-netty.tcp {
          maximum-frame-size = 4194304b
          send-buffer-size = 0b
          receive-buffer-size = 0b
        }

        runtime.channels {
          # What carries collectives of CUDA tensors: auto | akka | nccl (point-to-point goes in-process or by `remote`).
          transport = auto
          # How this node sends tensors to other nodes: tcp (a tensor socket per node pair, see socket below) or akka
          # (chunks as Akka remoting messages). Every node receives both ways. tcp measured 5-20x faster on 127.0.0.1
          # and keeps tensors off the connection Akka's control messages use.
          remote = tcp
          # Bytes of tensor data per chunk, on both remote paths.
          chunk-size = 1048576b
          # remote = akka: chunks in flight (sent, not yet acknowledged) per destination node. All Akka traffic to a node
          # shares one TCP connection: the window bounds how many tensor bytes a control message can find ahead of it.
          window = 4
          # How long a collective waits for a member's contribution before failing the step.
          receive-timeout = 10m
          # A half-received tensor whose sender went quiet this long is discarded.
          partial-transfer-timeout = 2m
          # The tensor socket every node listens on (when remoting is on). hostname "" binds where Akka remoting binds
          # (akka.remote.dot-netty.tcp.hostname; "" or 0.0.0.0 there means every interface); port 0 lets the OS choose
          # (senders ask the node's tensor endpoint for it). No authentication, like Akka remoting without TLS: keep
          # it on the cluster's private network.
          socket {
            hostname = ""
            port = 0
            connect-timeout = 10s
          }
        }
        """;

    public static Config Default { get; } = ConfigurationFactory.ParseString(Hocon);

    /// <summary>Falls back to the channels' settings for whatever <paramref name="config"/> does not set.</summary>
    public static Config WithChannels(this Config config) => config.WithFallback(Default);
}
