using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Channels;

/// <summary>All-reduce and broadcast over members spread across two nodes (even members on A, odd ones on B).</summary>
public abstract class CollectiveTests(TwoNodes nodes)
{
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    /// <summary>Places <paramref name="count"/> data-parallel replicas alternately on the two nodes; returns each member's group.</summary>
    (WorkerId[] Members, ICollectiveGroup[] Groups) Group(string run, int count, GroupKind kind = GroupKind.DataParallel)
    {
        var members = Enumerable.Range(0, count).Select(d => Worker(d, 0, 0, run)).ToArray();
        var hosts = members.Select((m, i) => i % 2 == 0 ? nodes.ChannelsA : nodes.ChannelsB).ToArray();
        for (int i = 0; i < count; i++) nodes.Place(members[i], hosts[i]);
        return (members, members.Select((m, i) => hosts[i].CreateGroup(kind, members, m)).ToArray());
    }

    /// <summary>Runs <paramref name="body"/> for every member on its own thread, later ranks starting first.</summary>
    static T[] OnEveryMember<T>(int count, Func<int, T> body)
    {
        var threads = Enumerable.Range(0, count).Select(rank => Task.Factory.StartNew(() =>
        {
            Thread.Sleep(25 * (count - 1 - rank)); // vary arrival order: the last member contributes first
            return body(rank);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Assert.True(Task.WaitAll(threads, Wait), "a member did not finish");
        return threads.Select(t => t.Result).ToArray();
    }

    /// <summary>The member-order sum written out in plain float arithmetic: ((x0 + x1) + x2) + ...</summary>
    static float[] MemberOrderSum(float[][] inputs)
    {
        var sum = (float[])inputs[0].Clone();
        for (int i = 1; i < inputs.Length; i++)
            for (int e = 0; e < sum.Length; e++) sum[e] += inputs[i][e];
        return sum;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void AllReduceIsBitwiseIdenticalAndEqualsTheMemberOrderSum(int count)
    {
        var (_, groups) = Group($"allreduce-{count}", count);
        const int length = 100_003; // not a multiple of the member count
        var inputs = Enumerable.Range(0, count).Select(rank => WideRangeValues(length, seed: 10 * count + rank)).ToArray();
        var expected = MemberOrderSum(inputs);
        var reversed = MemberOrderSum(inputs.Reverse().ToArray());
        // Two addends commute exactly; from three on, the order shows in the bits.
        if (count >= 3) Assert.True(expected.Zip(reversed, (x, y) => x != y).Any(differs => differs), "test data must be order-sensitive");

        var results = OnEveryMember(count, rank =>
        {
            using var tensor = torch.tensor(inputs[rank]);
            groups[rank].AllReduceSumInPlace(tensor, new CollectiveKey(0, 1, 0));
            return tensor.data<float>().ToArray();
        });

        foreach (var result in results) Assert.Equal(expected, result); // float[] equality: exact bits for these finite values
    }

    [Fact]
    public void AllReduceOfBf16AndReturningANewTensor()
    {
        const int count = 3;
        var (_, groups) = Group("allreduce-bf16", count);
        var inputs = Enumerable.Range(0, count).Select(rank => WideRangeValues(1001, seed: rank)).ToArray();
        var results = OnEveryMember(count, rank =>
        {
            using var input = torch.tensor(inputs[rank]).to(ScalarType.BFloat16);
            var before = Bytes(input);
            using var sum = groups[rank].AllReduceSum(input, new CollectiveKey(0, 1, 0));
            Assert.Equal(before, Bytes(input)); // the input is left as it was
            return Bytes(sum);
        });
        // bf16 rounds after each addition, in member order: replay that with torch on one thread.
        using var reference = torch.tensor(inputs[0]).to(ScalarType.BFloat16);
        for (int i = 1; i < count; i++)
        {
            using var next = torch.tensor(inputs[i]).to(ScalarType.BFloat16);
            reference.add_(next);
        }
        Assert.All(results, r => Assert.Equal(Bytes(reference), r));
    }

    [Theory]
    [InlineData(3, new[] { 1e16, 1.0, 1.0 }, 1e16)]             // (1e16 + 1) + 1 = 1e16 (ties to even); 1 + 1 first gives 1e16 + 2
    [InlineData(4, new[] { 1e16, 1.0, -1e16, 1.0 }, 1.0)]       // ((1e16 + 1) - 1e16) + 1 = 1; reversed gives 0
    public void ScalarAllReduceSumsInMemberOrder(int count, double[] values, double expected)
    {
        var (_, groups) = Group($"scalar-{count}", count);
        var results = OnEveryMember(count, rank => groups[rank].AllReduceSum(values[rank], new CollectiveKey(0, 1, 0)));
        Assert.All(results, r => Assert.Equal(expected, r));
    }

    [Fact]
    public void ConcurrentCollectivesWithDifferentKeysOrGroupsDoNotMix()
    {
        const int count = 3;
        var (members, dataGroups) = Group("concurrent", count);
        var modelGroups = members.Select((m, i) => (i % 2 == 0 ? nodes.ChannelsA : nodes.ChannelsB)
            .CreateGroup(GroupKind.ModelParallel, members, m)).ToArray();
        var jobs = new (ICollectiveGroup[] Groups, long Sequence, int Seed)[]
        {
            (dataGroups, 1, 100), (dataGroups, 2, 200), (modelGroups, 1, 300),
        };
        var inputs = jobs.Select(j => Enumerable.Range(0, count).Select(r => WideRangeValues(5000, j.Seed + r)).ToArray()).ToArray();

        var results = OnEveryMember(count, rank =>
        {
            // One thread per collective on every member: they run at the same time through the same inboxes.
            var work = jobs.Select((job, j) => Task.Factory.StartNew(() =>
            {
                using var tensor = torch.tensor(inputs[j][rank]);
                job.Groups[rank].AllReduceSumInPlace(tensor, new CollectiveKey(0, 7, job.Sequence));
                return tensor.data<float>().ToArray();
            }, TaskCreationOptions.LongRunning)).ToArray();
            return work.Select(t => t.Result).ToArray();
        });

        for (int j = 0; j < jobs.Length; j++)
        {
            var expected = MemberOrderSum(inputs[j]);
            for (int rank = 0; rank < count; rank++) Assert.Equal(expected, results[rank][j]);
        }
    }

    [Fact]
    public void BroadcastCopiesTheRootsValuesToEveryMember()
    {
        const int count = 3;
        var (_, groups) = Group("broadcast", count);
        var results = OnEveryMember(count, rank =>
        {
            using var tensor = torch.full([4, 3], (float)rank);
            groups[rank].BroadcastInPlace(tensor, root: 1, new CollectiveKey(0, 1, 0));
            return tensor.data<float>().ToArray();
        });
        Assert.All(results, r => Assert.Equal(Enumerable.Repeat(1f, 12), r));
    }

    [Fact]
    public async Task AStaleOrCancelledCollectiveFailsInsteadOfWaiting()
    {
        var (members, groups) = Group("collective-abort", 2);
        nodes.ChannelsA.AdvanceAttempt("collective-abort", 1);
        using var tensor = torch.ones(10);
        Assert.Throws<OperationCanceledException>(() => groups[0].AllReduceSumInPlace(tensor, new CollectiveKey(0, 1, 0)));

        // Member 1 never joins attempt 1; the coordinator cancels member 0's wait.
        var waiting = Task.Factory.StartNew(() => groups[0].AllReduceSumInPlace(tensor, new CollectiveKey(1, 1, 0)), TaskCreationOptions.LongRunning);
        Thread.Sleep(200);
        Assert.False(waiting.IsCompleted);
        nodes.ChannelsA.OpenInbox(members[0]).Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(Wait));
    }

    [Fact]
    public void MembersWithDifferentShapesGetAnErrorNamingTheMember()
    {
        var (_, groups) = Group("collective-shapes", 2);
        var errors = OnEveryMember(2, rank =>
        {
            using var tensor = torch.ones(rank == 0 ? 10 : 12);
            try
            {
                groups[rank].AllReduceSumInPlace(tensor, new CollectiveKey(0, 1, 0), new CancellationTokenSource(TimeSpan.FromSeconds(5)).Token);
                return null;
            }
            catch (Exception e) when (e is InvalidOperationException or OperationCanceledException)
            {
                return e;
            }
        });
        Assert.Contains(errors, e => e is InvalidOperationException && e.Message.Contains("member 1"));
    }
}

public sealed class CollectiveOverAkkaTests(AkkaNodes nodes) : CollectiveTests(nodes), IClassFixture<AkkaNodes>;

public sealed class CollectiveOverSocketTests(SocketNodes nodes) : CollectiveTests(nodes), IClassFixture<SocketNodes>;
