using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Channels;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

public class ChannelSettingsTests
{
    [Fact]
    public void DefaultsAreReadFromTheChannelsHocon()
    {
        var settings = TensorChannelSettings.Create(ChannelsConfig.Default);
        Assert.Equal(CollectiveTransport.Auto, settings.Transport);
        Assert.Equal(1024 * 1024, settings.ChunkSize);
        Assert.True(settings.Window >= 1);
        Assert.Equal(TimeSpan.FromMinutes(10), settings.ReceiveTimeout);
        Assert.True(settings.ChunkSize + TensorChannelSettings.FrameOverhead <=
            ChannelsConfig.Default.GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size"));
    }

    [Fact]
    public void ASystemWithoutTheSerializerBindingIsRefused()
    {
        // The runtime.channels section alone, without the akka.actor serializer binding.
        var config = ConfigurationFactory.ParseString("""
            akka.loglevel = WARNING
            runtime.channels { transport = auto, chunk-size = 1048576b, window = 4, receive-timeout = 10m, partial-transfer-timeout = 2m }
            """);
        using var system = ActorSystem.Create("unbound", config);
        var error = Assert.Throws<ConfigurationException>(() => TensorChannels.Get(system));
        Assert.Contains("ChannelsConfig", error.Message);
    }

    [Fact]
    public void AChunkLargerThanTheRemotingFrameIsRefused()
    {
        using var system = RemoteSystem("small-frames", "akka.remote.dot-netty.tcp.maximum-frame-size = 128000b");
        var error = Assert.Throws<ConfigurationException>(() => TensorChannels.Get(system));
        Assert.Contains("maximum-frame-size", error.Message);
    }

    [Theory]
    [InlineData("transport = gloo", "transport")]
    [InlineData("window = 0", "window")]
    [InlineData("chunk-size = 10b", "chunk-size")]
    public void BadValuesAreNamed(string setting, string key)
    {
        var config = ConfigurationFactory.ParseString($"runtime.channels.{setting}").WithFallback(ChannelsConfig.Default);
        var error = Assert.Throws<ConfigurationException>(() => TensorChannelSettings.Create(config));
        Assert.Contains($"runtime.channels.{key}", error.Message);
    }
}
