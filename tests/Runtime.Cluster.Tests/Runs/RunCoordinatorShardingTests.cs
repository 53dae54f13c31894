using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;

namespace Runtime.Cluster.Tests.Runs;

/// <summary>Run coordinators as sharded entities on a real one-node cluster.</summary>
public class RunCoordinatorShardingTests
{
    static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Coordinators_without_an_active_run_leave_memory_and_come_back_on_request()
    {
        using var dir = new TempDir();
        Fixtures.Model(dir["tiny"], LlamaPresets.Tiny);
        Fixtures.Data(dir["train.jsonl"]);
        RunSpec Spec(string name) => RunSpecParser.Parse($"run {{ name = \"{name}\", model = \"tiny\", data.path = \"train.jsonl\" }}", "t.conf", dir.Path);
        var options = TestNodes.Options(dir["node"], slots: 1) with
        {
            Overrides = ConfigurationFactory.ParseString("runtime.run-coordinator.passivate-inactive-after = 300ms").WithFallback(TestNodes.Quiet),
        };
        await using var node = await TestNodes.StartUp(options);
        var runs = node.RunCoordinators;

        // A query for an unknown run starts a coordinator that has nothing to keep: it goes away.
        Assert.Equal(RunPhase.None, (await runs.Ask<RunStatus>(new GetRunStatus("ghost"), AskTimeout)).Phase);
        await TestNodes.Eventually(() => !TestNodes.Hosts(runs, "ghost"), "the idle coordinator to passivate");

        // A finished run goes away too, and its state comes back from the journal when asked.
        Assert.IsType<RunAccepted>(await runs.Ask<IRunReply>(new SubmitRun("done", Spec("done")), AskTimeout));
        Assert.IsType<RunAccepted>(await runs.Ask<IRunReply>(new SubmitRun("live", Spec("live")), AskTimeout));
        foreach (var command in new IRunCommand[]
                 {
                     new WorkersReady("done", 1), new RecordStep("done", 1, 1, 1.5, 10, 1e-3, 1, 0.1), new CompleteRun("done", 1, 1),
                 })
            Assert.IsType<RunCommandAccepted>(await runs.Ask<IRunReply>(command, AskTimeout));
        await TestNodes.Eventually(() => !TestNodes.Hosts(runs, "done"), "the finished coordinator to passivate");
        var done = await runs.Ask<RunStatus>(new GetRunStatus("done"), AskTimeout);
        Assert.Equal((RunPhase.Completed, 1L, 1.5), (done.Phase, done.LastStep, done.LastLoss));

        // An active run's coordinator stays.
        await Task.Delay(1000);
        Assert.True(TestNodes.Hosts(runs, "live"));
    }
}
