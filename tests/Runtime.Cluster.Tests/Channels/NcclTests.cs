using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Akka.Actor;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Nccl;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>The parts of the NCCL binding that need no GPU: layouts, enum values, type mapping, and the missing-library error.</summary>
public class NcclTests
{
    [Fact]
    public void TheUniqueIdIsExactly128BlittableBytes()
    {
        Assert.Equal(128, Marshal.SizeOf<NcclUniqueId>());
        Assert.Equal(128, Unsafe.SizeOf<NcclUniqueId>());
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray();
        Assert.Equal(bytes, NcclUniqueId.FromBytes(bytes).ToArray());
        Assert.Throws<ArgumentException>(() => NcclUniqueId.FromBytes(new byte[127]));
    }

    [Fact]
    public void CommInitRankTakesTheUniqueIdByValue()
    {
        var init = typeof(NcclUniqueId).Assembly.GetType("Runtime.Cluster.Channels.Nccl.NcclNative")!
            .GetMethod("ncclCommInitRank", BindingFlags.Public | BindingFlags.Static)!;
        var parameters = init.GetParameters();
        Assert.Equal(new[] { "comm", "nranks", "commId", "rank" }, parameters.Select(p => p.Name));
        Assert.Equal(typeof(NcclUniqueId), parameters[2].ParameterType); // not a pointer, not by ref
        Assert.Equal(typeof(int), parameters[1].ParameterType);
        Assert.Equal("libnccl.so.2", init.GetCustomAttribute<DllImportAttribute>()!.Value);
    }

    [Fact]
    public void EveryEntryPointIsBoundToLibnccl()
    {
        var native = typeof(NcclUniqueId).Assembly.GetType("Runtime.Cluster.Channels.Nccl.NcclNative")!;
        var names = native.GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Where(m => m.GetCustomAttribute<DllImportAttribute>()?.Value == "libnccl.so.2")
            .Select(m => m.Name).ToHashSet();
        string[] required =
        [
            "ncclGetUniqueId", "ncclCommInitRank", "ncclAllReduce", "ncclBroadcast", "ncclAllGather", "ncclReduceScatter",
            "ncclSend", "ncclRecv", "ncclGroupStart", "ncclGroupEnd", "ncclCommDestroy", "ncclGetErrorString",
        ];
        Assert.Empty(required.Except(names));
    }

    [Fact]
    public void EnumValuesAreNcclHs()
    {
        // From nccl.h (see akka-and-control.md).
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, new[]
        {
            NcclDataType.Int8, NcclDataType.Uint8, NcclDataType.Int32, NcclDataType.Uint32, NcclDataType.Int64,
            NcclDataType.Uint64, NcclDataType.Float16, NcclDataType.Float32, NcclDataType.Float64, NcclDataType.Bfloat16,
        }.Select(v => (int)v));
        Assert.Equal(new[] { 0, 1, 2, 3, 4 },
            new[] { NcclRedOp.Sum, NcclRedOp.Prod, NcclRedOp.Max, NcclRedOp.Min, NcclRedOp.Avg }.Select(v => (int)v));
        Assert.Equal(0, (int)NcclResult.Success);
    }

    [Theory]
    [InlineData(ScalarType.Int8, 0)]
    [InlineData(ScalarType.Byte, 1)]
    [InlineData(ScalarType.Int32, 2)]
    [InlineData(ScalarType.Int64, 4)]
    [InlineData(ScalarType.Float16, 6)]
    [InlineData(ScalarType.Float32, 7)]
    [InlineData(ScalarType.Float64, 8)]
    [InlineData(ScalarType.BFloat16, 9)]
    public void TorchTypesMapToNcclTypes(ScalarType dtype, int nccl) => Assert.Equal(nccl, (int)NcclDataTypes.From(dtype));

    [Fact]
    public void TypesNcclLacksAreRefused()
    {
        Assert.Throws<NotSupportedException>(() => NcclDataTypes.From(ScalarType.Int16));
        Assert.Throws<NotSupportedException>(() => NcclDataTypes.From(ScalarType.Bool));
    }

    [Fact]
    public void AMissingLibraryFailsWithAMessageThatSaysWhatToDo()
    {
        var error = Assert.Throws<NcclUnavailableException>(() => NcclLibrary.EnsureAvailable("libnccl-missing-for-test.so.2"));
        Assert.Contains("libnccl-missing-for-test.so.2", error.Message);
        Assert.Contains("runtime.channels.transport", error.Message);
    }

    [Fact]
    public void TransportNcclIsCheckedWhenTheChannelsStart()
    {
        using var system = ActorSystem.Create("nccl-config", LocalConfig("runtime.channels.transport = nccl"));
        if (NcclLibrary.IsAvailable)
        {
            Assert.Equal(CollectiveTransport.Nccl, TensorChannels.Get(system).Settings.Transport);
            return;
        }
        var error = Assert.Throws<NcclUnavailableException>(() => TensorChannels.Get(system));
        Assert.Contains("libnccl.so.2", error.Message);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("akka")]
    public void CpuTensorsReduceOverTheChannelsUnlessNcclIsDemanded(string transport)
    {
        using var system = ActorSystem.Create("collective-choice", LocalConfig($"runtime.channels.transport = {transport}"));
        var members = new[] { Worker(0), Worker(1) };
        var group = TensorChannels.Get(system).CreateGroup(GroupKind.DataParallel, members, members[1], CPU);
        Assert.IsType<Runtime.Cluster.Channels.Collectives.DirectCollectiveGroup>(group);
        Assert.Equal(1, group.Rank);
    }
}
