using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>Counts every live tensor in the process, so it runs alone.</summary>
[CollectionDefinition(nameof(ChannelLeakTests), DisableParallelization = true)]
public sealed class ChannelLeakCollection;

[Collection(nameof(ChannelLeakTests))]
public sealed class ChannelLeakTests : IDisposable
{
    readonly TwoNodes _nodes = new();

    public void Dispose() => _nodes.Dispose();

    [Fact]
    public void RepeatedTransfersAndCollectivesLeaveNoLiveTensors()
    {
        var a = Worker(0, 0, run: "leak");
        var b = Worker(1, 0, run: "leak");
        var local = Worker(2, 0, run: "leak");
        var inboxA = _nodes.Place(a, _nodes.ChannelsA);
        var inboxB = _nodes.Place(b, _nodes.ChannelsB);
        var inboxLocal = _nodes.Place(local, _nodes.ChannelsA);
        var members = new[] { a, b, local };
        var groups = new[]
        {
            _nodes.ChannelsA.CreateGroup(GroupKind.DataParallel, members, a),
            _nodes.ChannelsB.CreateGroup(GroupKind.DataParallel, members, b),
            _nodes.ChannelsA.CreateGroup(GroupKind.DataParallel, members, local),
        };
        var wait = TimeSpan.FromSeconds(30);

        void Round(int step)
        {
            using var scope = torch.NewDisposeScope();
            _nodes.ChannelsA.Transport.Send(b, Tag(step, a), torch.randn(700_000));            // remote, 3 chunks
            _nodes.ChannelsA.Transport.Send(local, Tag(step, a), torch.randn(1000));            // in-process
            _nodes.ChannelsB.Transport.Send(a, Tag(step, b, TensorKind.Gradient), torch.randn(10)); // remote, back
            inboxB.Take(Tag(step, a), wait);
            inboxLocal.Take(Tag(step, a), wait);
            inboxA.Take(Tag(step, b, TensorKind.Gradient), wait);
            // A stale tensor is dropped on arrival and must be freed too.
            _nodes.ChannelsA.Transport.Send(local, Tag(step, a, attempt: -1), torch.randn(10));
            var reduce = Enumerable.Range(0, 3).Select(rank => Task.Factory.StartNew(() =>
            {
                using var inner = torch.NewDisposeScope();
                var tensor = torch.randn(30_000);
                groups[rank].AllReduceSumInPlace(tensor, new CollectiveKey(0, step, 0));
                return groups[rank].AllReduceSum(1.0, new CollectiveKey(0, step, 1));
            }, TaskCreationOptions.LongRunning)).ToArray();
            Assert.True(Task.WaitAll(reduce, wait));
        }

        Round(0);
        Round(1);
        long before = torch.Tensor.TotalCount;
        for (int step = 2; step < 12; step++) Round(step);
        Assert.Equal(before, torch.Tensor.TotalCount);
        Assert.Equal(0, inboxA.Count + inboxB.Count + inboxLocal.Count);
    }
}
