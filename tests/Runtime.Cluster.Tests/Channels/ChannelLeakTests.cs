using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>Counts every live tensor in the process, so it runs alone.</summary>
[CollectionDefinition(nameof(ChannelLeakTests), DisableParallelization = true)]
public sealed class ChannelLeakCollection;

[Collection(nameof(ChannelLeakTests))]
public sealed class ChannelLeakTests
{
    [Theory]
    [InlineData("akka")]
    [InlineData("tcp")]
    public void RepeatedTransfersAndCollectivesLeaveNoLiveTensors(string remote)
    {
        using var nodes = new TwoNodes(remote);
        var a = Worker(0, 0, run: "leak");
        var b = Worker(1, 0, run: "leak");
        var local = Worker(2, 0, run: "leak");
        var inboxA = nodes.Place(a, nodes.ChannelsA);
        var inboxB = nodes.Place(b, nodes.ChannelsB);
        var inboxLocal = nodes.Place(local, nodes.ChannelsA);
        var members = new[] { a, b, local };
        var groups = new[]
        {
            nodes.ChannelsA.CreateGroup(GroupKind.DataParallel, members, a),
            nodes.ChannelsB.CreateGroup(GroupKind.DataParallel, members, b),
            nodes.ChannelsA.CreateGroup(GroupKind.DataParallel, members, local),
        };
        var wait = TimeSpan.FromSeconds(30);

        void Round(int step)
        {
            using var scope = torch.NewDisposeScope();
            nodes.ChannelsA.Transport.Send(b, Tag(step, a), torch.randn(700_000));            // remote, 3 chunks
            nodes.ChannelsA.Transport.Send(local, Tag(step, a), torch.randn(1000));            // in-process
            nodes.ChannelsB.Transport.Send(a, Tag(step, b, TensorKind.Gradient), torch.randn(10)); // remote, back
            inboxB.Take(Tag(step, a), wait);
            inboxLocal.Take(Tag(step, a), wait);
            inboxA.Take(Tag(step, b, TensorKind.Gradient), wait);
            // A stale tensor is dropped on arrival and must be freed too.
            nodes.ChannelsA.Transport.Send(local, Tag(step, a, attempt: -1), torch.randn(10));
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
        // Tensors other tests let go of undisposed are finalized whenever the GC runs; get that over with first. (Doing
        // the same after the loop would hide tensors this code fails to dispose, so the count is read without it.)
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        long before = torch.Tensor.TotalCount;
        for (int step = 2; step < 12; step++) Round(step);
        // A socket writer disposes a sent tensor after its last write, which can be a moment after the receiver has it.
        var settle = System.Diagnostics.Stopwatch.StartNew();
        while (torch.Tensor.TotalCount != before && settle.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(10);
        Assert.Equal(before, torch.Tensor.TotalCount);
        var held = new[] { inboxA, inboxB, inboxLocal }.SelectMany(i => i.HeldTags.Select(t => $"{i.Owner}: {t}")).ToList();
        Assert.True(held.Count == 0, $"tensors left in inboxes: {string.Join("; ", held)}");
    }
}
