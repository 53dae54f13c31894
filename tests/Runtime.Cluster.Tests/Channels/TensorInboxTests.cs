using Runtime.Cluster.Channels;
using TorchSharp;
using static Runtime.Cluster.Tests.Channels.ChannelTestKit;

namespace Runtime.Cluster.Tests.Channels;

public class TensorInboxTests
{
    static readonly WorkerId Owner = Worker(0, 1);
    static readonly WorkerId Peer = Worker(0, 0);
    static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    [Fact]
    public void TakesTheExactTagWhateverOrderTagsArriveIn()
    {
        using var inbox = new TensorInbox(Owner);
        for (int step = 2; step >= 0; step--) inbox.Deliver(Tag(step, Peer), torch.tensor(new[] { (float)step }));
        inbox.Deliver(Tag(1, Peer, TensorKind.Gradient), torch.tensor(new[] { 100f }));

        for (int step = 0; step < 3; step++)
        {
            using var taken = inbox.Take(Tag(step, Peer), Second);
            Assert.Equal(step, taken.item<float>());
        }
        using var gradient = inbox.Take(Tag(1, Peer, TensorKind.Gradient), Second);
        Assert.Equal(100f, gradient.item<float>());
        Assert.Equal(0, inbox.Count);
    }

    [Fact]
    public async Task TakeBlocksUntilTheTagIsDeliveredFromAnotherThread()
    {
        using var inbox = new TensorInbox(Owner);
        var tag = Tag(5, Peer);
        var taker = Task.Run(() =>
        {
            using var t = inbox.Take(tag, TimeSpan.FromSeconds(20));
            return t.item<float>();
        });
        Thread.Sleep(100);
        Assert.False(taker.IsCompleted);
        inbox.Deliver(Tag(4, Peer), torch.tensor(new[] { 4f })); // another tag does not wake it for good
        Thread.Sleep(50);
        Assert.False(taker.IsCompleted);
        inbox.Deliver(tag, torch.tensor(new[] { 5f }));
        Assert.Equal(5f, await taker.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void TakeTimesOutNamingTheTagAndWhatIsHeld()
    {
        using var inbox = new TensorInbox(Owner);
        inbox.Deliver(Tag(1, Peer), torch.zeros(1));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var error = Assert.Throws<TimeoutException>(() => inbox.Take(Tag(2, Peer), TimeSpan.FromMilliseconds(150)));
        Assert.True(clock.ElapsedMilliseconds >= 140, $"gave up after {clock.ElapsedMilliseconds} ms");
        Assert.Contains("step 2", error.Message);
        Assert.Contains("step 1", error.Message);
    }

    [Fact]
    public async Task CancelWakesABlockedTakeAndKillsTheAttempt()
    {
        using var inbox = new TensorInbox(Owner);
        var taker = Task.Run(() => inbox.Take(Tag(3, Peer), TimeSpan.FromSeconds(20)));
        Thread.Sleep(100);
        inbox.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => taker.WaitAsync(TimeSpan.FromSeconds(5)));

        // The cancelled attempt is dead: its tensors are dropped, later waits fail at once.
        Assert.False(inbox.Deliver(Tag(3, Peer), torch.zeros(1)));
        Assert.Throws<OperationCanceledException>(() => inbox.Take(Tag(3, Peer), TimeSpan.FromSeconds(20)));
        inbox.Reset(1);
        Assert.True(inbox.Deliver(Tag(3, Peer, attempt: 1), torch.zeros(1)));
        using var _ = inbox.Take(Tag(3, Peer, attempt: 1), Second);
    }

    [Fact]
    public void CancellingAnOlderAttemptLeavesTheCurrentOneAlive()
    {
        using var inbox = new TensorInbox(Owner, attempt: 2);
        Assert.False(inbox.Cancel(1)); // a late abort of attempt 1, after the inbox moved on
        Assert.False(inbox.IsCancelled);
        Assert.True(inbox.Deliver(Tag(0, Peer, attempt: 2), torch.zeros(1)));
        using (inbox.Take(Tag(0, Peer, attempt: 2), Second)) { }

        Assert.True(inbox.Cancel(2));
        Assert.True(inbox.IsCancelled);
        Assert.Throws<OperationCanceledException>(() => inbox.Take(Tag(1, Peer, attempt: 2), Second));
    }

    [Fact]
    public async Task CancellationTokenWakesABlockedTake()
    {
        using var inbox = new TensorInbox(Owner);
        using var cancel = new CancellationTokenSource();
        var taker = Task.Run(() => inbox.Take(Tag(3, Peer), TimeSpan.FromSeconds(20), cancel.Token));
        Thread.Sleep(100);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => taker.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(inbox.IsCancelled); // the token stops one wait, not the attempt
    }

    [Fact]
    public void StaleAttemptsAreDroppedOnDeliveryAndOnReset()
    {
        using var inbox = new TensorInbox(Owner, attempt: 1);
        var stale = torch.zeros(1);
        Assert.False(inbox.Deliver(Tag(0, Peer, attempt: 0), stale));
        Assert.True(stale.IsInvalid); // disposed, not kept

        var current = torch.ones(1);
        var next = torch.tensor(new[] { 2f });
        Assert.True(inbox.Deliver(Tag(0, Peer, attempt: 1), current));
        Assert.True(inbox.Deliver(Tag(0, Peer, attempt: 2), next)); // a faster peer's next attempt is kept
        inbox.Reset(2);
        Assert.True(current.IsInvalid);
        Assert.False(next.IsInvalid);
        Assert.Equal(2, inbox.DroppedCount);
        Assert.Throws<OperationCanceledException>(() => inbox.Take(Tag(0, Peer, attempt: 1), Second));
        using var taken = inbox.Take(Tag(0, Peer, attempt: 2), Second);
        Assert.Same(next, taken);
        Assert.Throws<ArgumentOutOfRangeException>(() => inbox.Reset(1));
    }

    [Fact]
    public async Task ResetWakesAWaitForAStaleAttempt()
    {
        using var inbox = new TensorInbox(Owner);
        var taker = Task.Run(() => inbox.Take(Tag(7, Peer), TimeSpan.FromSeconds(20)));
        Thread.Sleep(100);
        inbox.Reset(1);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => taker.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void RefusesADuplicateTagAndAnotherRunsTag()
    {
        using var inbox = new TensorInbox(Owner);
        inbox.Deliver(Tag(1, Peer), torch.zeros(1));
        var duplicate = torch.zeros(1);
        Assert.Throws<InvalidOperationException>(() => inbox.Deliver(Tag(1, Peer), duplicate));
        Assert.True(duplicate.IsInvalid);
        Assert.Throws<ArgumentException>(() => inbox.Deliver(Tag(1, Worker(0, run: "other-run")), torch.zeros(1)));
    }

    [Fact]
    public void TakeAttachesTheTensorToTheCallersDisposeScope()
    {
        using var inbox = new TensorInbox(Owner);
        torch.Tensor taken;
        using (var scope = torch.NewDisposeScope())
        {
            inbox.Deliver(Tag(1, Peer), torch.zeros(1)); // the inbox detaches it from this scope...
            taken = inbox.Take(Tag(1, Peer), Second);     // ...and Take attaches it again
            Assert.True(scope.Contains(taken));
        }
        Assert.True(taken.IsInvalid);
    }

    [Fact]
    public async Task DisposeFreesHeldTensorsAndFailsWaits()
    {
        var inbox = new TensorInbox(Owner);
        var held = torch.zeros(1);
        inbox.Deliver(Tag(1, Peer), held);
        var taker = Task.Run(() => inbox.Take(Tag(2, Peer), TimeSpan.FromSeconds(20)));
        Thread.Sleep(100);
        inbox.Dispose();
        Assert.True(held.IsInvalid);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => taker.WaitAsync(TimeSpan.FromSeconds(5)));
    }
}
