using Akka.Actor;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// A worker's entity can stop (its trainer died, its inbox closed with it) while its replica's loader is still sending
/// the attempt's next steps, before the driver has aborted the attempt. That costs the attempt, not the run: bad data
/// fails the run, a missing receiver does not.
/// </summary>
public sealed class DataLoaderTests
{
    [Fact]
    public async Task A_loader_whose_receiver_is_gone_loses_the_attempt_instead_of_failing_the_run()
    {
        using var dir = new TempDir();
        var run = new MicroRun(dir["micro"]);
        await using var node = await TrainingCluster.StartNode(dir["node"], slots: 1);
        var spec = run.Spec("receiver-gone");
        var driver = Inbox.Create(node.System);
        var settings = RuntimeSettings.From(node.System.Settings.Config).Worker;
        var loader = node.System.ActorOf(DataLoader.Props("receiver-gone", 1, spec, 0, driver.Receiver, settings));
        Assert.IsType<LoaderReady>(await driver.ReceiveAsync(TimeSpan.FromSeconds(30)));

        // No worker of this run has an inbox on the node, and no placement named another node for them.
        loader.Tell(new LoadStep("receiver-gone", 1, 1, 0));

        var failed = Assert.IsType<LoaderFailed>(await driver.ReceiveAsync(TimeSpan.FromSeconds(30)));
        Assert.True(failed.Retryable, failed.Reason);
        Assert.Contains("is gone", failed.Reason);
        node.System.Stop(loader);
    }
}
