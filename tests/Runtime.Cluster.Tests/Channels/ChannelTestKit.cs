using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Channels;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

internal static class ChannelTestKit
{
    public const string Run = "run-test";

    public static WorkerId Worker(int data, int stage = 0, int tensor = 0, string run = Run) => new(run, data, stage, tensor);

    public static TensorTag Tag(int step, WorkerId source, TensorKind kind = TensorKind.Activation, long attempt = 0, int microBatch = 0) =>
        new(attempt, step, microBatch, kind, source);

    /// <summary>An ActorSystem with remoting on 127.0.0.1 and an OS-chosen port, configured for the channels.</summary>
    public static ActorSystem RemoteSystem(string name, string extra = "") =>
        ActorSystem.Create(name, ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
            akka.loglevel = WARNING
            akka.stdout-loglevel = WARNING
            {{extra}}
            """).WithChannels());

    public static Config LocalConfig(string extra = "") =>
        ConfigurationFactory.ParseString($$"""
            akka.loglevel = WARNING
            akka.stdout-loglevel = WARNING
            {{extra}}
            """).WithChannels();

    /// <summary>The tensor's bytes, for bitwise comparisons (any dtype, any layout).</summary>
    public static byte[] Bytes(Tensor tensor)
    {
        using var scope = torch.NewDisposeScope();
        var contiguous = tensor.contiguous();
        return contiguous.numel() == 0 ? [] : contiguous.bytes.ToArray();
    }

    /// <summary>A float32 tensor of random values spanning many magnitudes, so sums in different orders round differently.</summary>
    public static float[] WideRangeValues(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-3, 9)));
        return values;
    }
}
