using System.Collections.Concurrent;
using Akka.Actor;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Tokenization;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using TorchSharp;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// One node with 4 worker slots that trains (the run driver that places workers), the micro model and its data, and
/// the yardstick: the same training run by the plain single-worker <see cref="TrainingLoop"/>, computed once.
/// </summary>
public class TrainingCluster : IAsyncLifetime
{
    readonly TempDir _dir = new();
    readonly Lazy<Dictionary<string, double[]>> _yardstick;
    readonly int _slots;

    public TrainingCluster() : this(slots: 4)
    {
    }

    protected TrainingCluster(int slots)
    {
        _slots = slots;
        Run = new MicroRun(_dir["micro"]);
        _yardstick = new(() => TrainingLoopAdapter(Run, steps: 6));
    }

    public MicroRun Run { get; }

    public RuntimeNode Node { get; private set; } = null!;

    public RunClient Client { get; private set; } = null!;

    public ProgressLog Progress { get; private set; } = null!;

    /// <summary>The adapter the single-worker loop trains in the micro spec's 6 steps.</summary>
    public Dictionary<string, double[]> Yardstick => _yardstick.Value;

    public async Task InitializeAsync()
    {
        Node = await StartNode(_dir["node"], _slots);
        Client = RunClient.For(Node);
        Progress = ProgressLog.On(Node.System);
    }

    /// <summary>A node that trains; a run waiting for slots says so after 1 s (15 s in reference.conf).</summary>
    public static Task<RuntimeNode> StartNode(string dataDir, int slots, params string[] seeds)
    {
        var options = TestNodes.Options(dataDir, slots, seeds);
        return TestNodes.StartUp(options with
        {
            RunDriver = TrainingRunDriver.Instance,
            Overrides = Akka.Configuration.ConfigurationFactory.ParseString("runtime.driver.capacity-notice-after = 1s").WithFallback(options.Overrides),
        });
    }

    public async Task DisposeAsync()
    {
        await Node.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>Submits and waits for the run; fails with the coordinator's reason unless it completed.</summary>
    public async Task<RunStatus> Train(RunSpec spec, string? resumeFrom = null, double timeoutSeconds = 120)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        var id = await Client.SubmitAsync(spec, resumeFrom: resumeFrom);
        var status = await Client.WaitAsync(id, cancellationToken: timeout.Token);
        Assert.True(status.Phase == RunPhase.Completed, $"run {id} ended {status.Phase}: {status.Reason}");
        return status;
    }

    /// <summary>A worker entity's trainer child on this node, found by its sharding path (ids are URL-encoded in paths).</summary>
    public async Task<IActorRef> TrainerOf(Runtime.Cluster.Sharding.WorkerId worker)
    {
        var name = Uri.EscapeDataString(worker.ToString());
        var selection = Node.System.ActorSelection($"/system/sharding/{Runtime.Cluster.Workers.RunWorkers.TypeName}/{name}/{name}/trainer");
        return await selection.ResolveOne(TimeSpan.FromSeconds(5));
    }

    /// <summary>The yardstick: the whole model in one <see cref="TrainingLoop"/>, set up by hand from the micro spec's values.</summary>
    public static Dictionary<string, double[]> TrainingLoopAdapter(MicroRun run, int steps)
    {
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);
        try
        {
            using var source = new HfModelFolder(run.Model);
            using var model = LlamaLoader.Load(source, MicroRun.Config, options: new LlamaModelOptions { RequiresGrad = true });
            LoraInjector.Inject(model, new LoraConfig(4, 8, 0.0, LoraConfig.AllTargets), MicroRun.Seed);
            var tokenizer = new RealTokenizerFixture().Tokenizer;
            using var data = TrainingData.Open(run.Data, tokenizer,
                new TrainingDataOptions(new DataOptions(MicroRun.RowLength), new SamplerOptions((ulong)MicroRun.Seed)));
            var options = new TrainingLoopOptions
            {
                Layout = new BatchLayout(2, 4, 1),
                Schedule = new LrSchedule(LrScheduleKind.Linear, 1e-2, 6, 0),
                Optimizer = new OptimizerStepOptions { AdamW = new AdamWOptions { WeightDecay = 0.01 }, MaxGradNorm = 1.0 },
                Seed = MicroRun.Seed,
                MaxSteps = steps,
            };
            using var loop = new TrainingLoop(model, TrainingBatches.From(data), options);
            loop.Run();
            return LoraInjector.AdapterTensors(model).ToDictionary(t => t.Name, t => MicroRun.Values(t.Tensor));
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }
}

/// <summary>Every progress event published on a node's event stream (the driver publishes there too).</summary>
public sealed class ProgressLog
{
    readonly ConcurrentQueue<IRunProgress> _events = new();

    public static ProgressLog On(ActorSystem system) => Into(new ProgressLog(), system);

    /// <summary>Adds <paramref name="system"/>'s events to <paramref name="log"/> (a run's driver may be on any node).</summary>
    public static ProgressLog Into(ProgressLog log, ActorSystem system)
    {
        var listener = system.ActorOf(Props.Create(() => new Listener(log._events)));
        system.EventStream.Subscribe(listener, typeof(IRunProgress));
        return log;
    }

    public IReadOnlyList<T> Of<T>(string runId) where T : IRunProgress => _events.OfType<T>().Where(e => e.RunId == runId).ToList();

    /// <summary>Every event so far, in the order they were published (on one node).</summary>
    public IReadOnlyList<IRunProgress> All => _events.ToList();

    sealed class Listener : ReceiveActor
    {
        public Listener(ConcurrentQueue<IRunProgress> events) => Receive<IRunProgress>(events.Enqueue);
    }
}
