using Runtime.Cluster.Tests.Training;
using Runtime.Training.Checkpoints;
using Xunit.Abstractions;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>
/// `rt finetune --join`: the run's workers on real `rt node` processes (one slot each, so W workers are W processes),
/// its tensors over the tensor sockets between them, and the result compared with the in-process single worker's
/// (within the bound of the cluster's layout-equivalence tests: data-parallel replicas sum gradients in another order).
/// </summary>
[Collection(FinetuneCollection.Name)]
public sealed class FinetuneJoinTests(FinetuneFixture fixture, LoopbackCluster cluster, ITestOutputHelper log) : IClassFixture<LoopbackCluster>
{
    const double Bound = 5e-5;

    // Tensor-parallel ranks also sum partial products in another order (the cluster's tensor-parallel tests' bound).
    const double TensorParallelBound = 2e-4;

    MicroSpec Specs => fixture.Specs;

    async Task<string> Finetune(string spec, params string[] more)
    {
        using var rt = cluster.Finetune(spec, more);
        int exit = await rt.WaitForExit();
        log.WriteLine(rt.Output);
        Assert.True(exit == 0, $"rt finetune --join exited {exit}:\n{rt.Output}\n{cluster.Logs}");
        return rt.Output;
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(1, 2)]
    public async Task Workers_spread_over_rt_node_processes_train_what_one_in_process_worker_trains(int data, int pipeline)
    {
        var name = $"join-{data}x{pipeline}";
        var output = await Finetune(Specs.Write(name, data: data, pipeline: pipeline));
        Assert.Contains($"{data * pipeline} workers (data {data} x pipeline {pipeline} x tensor 1)", output);
        Assert.Contains("this node", output); // the client hosts no workers: they are on the worker nodes' single slots
        Assert.Contains($"done: run {name}, 6 steps", output);
        // Every worker's memory crossed to this node: after step 1 and in the summary, one line each. (Whether the
        // activation peak is measured depends on the worker being alone in its process: the (2,2,2) test adds nodes of
        // two slots, and the order of tests decides where these workers land.)
        var workers = data == 2 ? new[] { "0.0.0", "1.0.0" } : ["0.0.0", "0.1.0"];
        var lines = output.Split('\n').Select(l => l.TrimEnd()).ToList();
        foreach (var worker in workers)
        {
            Assert.Single(lines, l => l.StartsWith($"memory {worker}: measured ", StringComparison.Ordinal) && l.Contains("weights ", StringComparison.Ordinal));
            Assert.Single(lines, l => l.StartsWith($"  memory {worker}: measured ", StringComparison.Ordinal) && l.EndsWith("(step 6)", StringComparison.Ordinal));
        }
        double difference = MicroRun.RelativeDifference(fixture.OneWorker, MicroRun.Adapter(Specs.Adapter(name)));
        log.WriteLine($"data {data} x pipeline {pipeline} on {data * pipeline} rt node processes: max relative difference to one in-process worker {difference:E2}");
        Assert.True(difference <= Bound, $"{difference:E2} > {Bound:E0}");
    }

    [Fact]
    public async Task A_data_pipeline_and_tensor_parallel_run_over_the_processes_trains_what_one_worker_trains()
    {
        // 8 workers: the two single-slot worker nodes and three more of two slots each.
        for (int i = 0; i < 3; i++) await cluster.StartNode(0, "worker", slots: 2);
        await Finetune(Specs.Write("join-2x2x2", data: 2, pipeline: 2, tensor: 2));
        double difference = MicroRun.RelativeDifference(fixture.OneWorker, MicroRun.Adapter(Specs.Adapter("join-2x2x2")));
        log.WriteLine($"2 x 2 x 2: max relative difference to one in-process worker {difference:E2}");
        Assert.True(difference <= TensorParallelBound, $"{difference:E2} > {TensorParallelBound:E0}");
    }

    [Fact]
    public async Task A_worker_node_killed_mid_run_costs_one_attempt_and_the_run_ends_as_if_nothing_happened()
    {
        // The same run without failures, in-process with two workers (the same layout: bitwise the same numbers).
        var reference = Rt.Invoke("finetune", Specs.Write("kill-reference", steps: 200, checkpointEvery: 4, data: 2));
        Assert.True(reference.Exit == 0, reference.Out + reference.Err);

        // A spare node, so that the run has somewhere to go when one of its nodes dies.
        await cluster.StartWorkerNode();
        using var rt = cluster.Finetune(Specs.Write("kill", steps: 200, checkpointEvery: 4, data: 2));
        await rt.WaitForLine(l => l.StartsWith("training: 200 steps", StringComparison.Ordinal), "training to start");
        var hosts = await cluster.PortsHosting("kill");
        Assert.Equal(2, hosts.Count);
        await rt.WaitForLine(l => l.StartsWith("checkpoint 8 saved", StringComparison.Ordinal), "checkpoint 8");
        var victim = cluster.NodeAt(hosts[1]);
        victim.Signal(RtProcess.SIGKILL);

        int exit = await rt.WaitForExit(180);
        log.WriteLine(rt.Output);
        Assert.True(exit == 0, $"exit {exit}:\n{rt.Output}\n{cluster.Logs}");
        var lost = await rt.WaitForLine(l => l.StartsWith("attempt 1 lost: ", StringComparison.Ordinal), "the lost attempt");
        var resumed = await rt.WaitForLine(l => l.StartsWith("training: resuming after step ", StringComparison.Ordinal), "the second attempt");
        log.WriteLine($"killed node :{hosts[1]}; {lost}; {resumed}");
        long resumeStep = long.Parse(resumed.Split(' ')[4], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(resumeStep >= 8 && resumeStep % 4 == 0, resumed);
        Assert.Equal(0, MicroRun.RelativeDifference(MicroRun.Adapter(Specs.Adapter("kill-reference")), MicroRun.Adapter(Specs.Adapter("kill"))));
    }

    [Fact]
    public async Task Sigint_stops_a_joined_run_at_a_checkpoint_of_its_last_step_exits_130_and_resume_finishes_it()
    {
        var spec = Specs.Write("sigint", steps: 40, checkpointEvery: 20, pipeline: 2);
        using (var rt = cluster.Finetune(spec))
        {
            await rt.WaitForLine(l => l.StartsWith("step 3/40", StringComparison.Ordinal), "step 3");
            rt.Signal(RtProcess.SIGINT);
            int exit = await rt.WaitForExit();
            log.WriteLine(rt.Output);
            Assert.True(exit == 130, $"exit {exit}:\n{rt.Output}\n{cluster.Logs}");
            var stopped = await rt.WaitForLine(l => l.StartsWith("stopped: run sigint after step ", StringComparison.Ordinal), "the summary");
            long step = long.Parse(stopped.Split(' ')[5], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(step, 3, 39);
            Assert.Equal(step, CheckpointFolders.Committed(Specs.Output("sigint")).Last().Step);
        }
        // The workers were released: the resumed run gets both slots again.
        var resumed = await Finetune(spec, "--resume");
        Assert.Contains("training: resuming after step", resumed);
        Assert.Contains("done: run sigint-2, 40 steps", resumed);
    }
}
