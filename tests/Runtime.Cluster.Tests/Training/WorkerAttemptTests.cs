using Akka.Actor;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Tests.Support;
using Runtime.Cluster.Workers;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// The inboxes of a run's workers on one node move to a new attempt together, as soon as the first of those workers
/// hears of it. The driver's abort of the old attempt reaches each worker on its own schedule, so a worker can hear
/// it after a neighbour has already moved every inbox on: that late abort must not kill the new attempt. (It did: a
/// lost worker then cost three or four attempts instead of one, each new attempt's first step failing at once.)
/// </summary>
public sealed class WorkerAttemptTests
{
    [Fact]
    public async Task A_late_abort_of_the_old_attempt_does_not_cancel_the_new_one()
    {
        using var dir = new TempDir();
        var run = new MicroRun(dir["micro"]);
        await using var node = await TrainingCluster.StartNode(dir["node"], slots: 2);
        var spec = run.Spec("late-abort", data: 2, pipeline: 1);
        var slice = WorkerSlice.Of(RunRecipe.Stages(spec, MicroRun.Config)[0]);
        var first = new WorkerId("late-abort", 0, 0, 0);
        var second = new WorkerId("late-abort", 1, 0, 0);
        var region = RunWorkers.Get(node.System).RequireRegion();
        var driver = Inbox.Create(node.System);
        InitializeWorker Initialize(WorkerId worker, int attempt) => new(worker, attempt, spec, slice, 6, null);
        async Task Ready(WorkerId worker, int attempt)
        {
            // The replicas' data loaders answer the same sender (LoaderReady); wait for the worker's own answer.
            while (await driver.ReceiveAsync(TimeSpan.FromSeconds(60)) is not WorkerReady ready || ready.Worker != worker || ready.Attempt != attempt) { }
        }

        driver.Send(region, Initialize(first, 1));
        await Ready(first, 1);
        driver.Send(region, Initialize(second, 1));
        await Ready(second, 1);
        // Attempt 2 reaches the second worker first: it moves both inboxes of the run on this node to attempt 2.
        driver.Send(region, Initialize(second, 2));
        await Ready(second, 2);
        var inbox = TensorChannels.Get(node.System).Router.FindInbox(first.ToChannel())!;
        Assert.Equal(2, inbox.Attempt);

        // The first worker, still at attempt 1, now hears attempt 1's abort; asking it again for attempt 1 (answered
        // from what it holds) shows it has handled the abort.
        driver.Send(region, new AbortAttempt(first, 1, "a worker of attempt 1 was lost"));
        driver.Send(region, Initialize(first, 1));
        await Ready(first, 1);
        Assert.False(inbox.IsStale(2), $"attempt 2 was cancelled in {first}'s inbox by attempt 1's abort");

        region.Tell(new ReleaseWorker(first, 2));
        region.Tell(new ReleaseWorker(second, 2));
    }
}
