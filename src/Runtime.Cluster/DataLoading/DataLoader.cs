using Akka.Actor;
using Akka.Event;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Driving;
using Runtime.Cluster.RunSpecs;
using Runtime.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.DataLoading;

/// <summary>
/// The data loader of one data-parallel replica for one attempt: it opens the run's data (shared in this process, see
/// <see cref="SharedTrainingData"/>) and, for each <see cref="LoadStep"/>, collates the replica's micro-batches of that
/// step (the global micro-batches j with j % dp == d of the step starting at the given global position) and sends them
/// through the tensor channels: token ids to stage 0, positions (and segment ids of packed rows) to every stage, labels
/// to the last stage, each to every tensor-parallel rank. The driver asks for steps ahead of the one running, so the
/// tensors are waiting in the workers' inboxes before anyone needs them. It collates tensors, so it runs on its own
/// thread (runtime.worker.dispatcher) like a worker's trainer.
/// </summary>
public sealed class DataLoader : ReceiveActor
{
    readonly string _runId;
    readonly int _attempt;
    readonly RunSpec _spec;
    readonly int _replica;
    readonly IActorRef _driver;
    readonly ITensorTransport _transport;
    readonly BatchLayout _layout;
    readonly ILoggingAdapter _log = Context.GetLogger();
    SharedTrainingData.Lease? _data;

    public DataLoader(string runId, int attempt, RunSpec spec, int replica, IActorRef driver)
    {
        _runId = runId;
        _attempt = attempt;
        _spec = spec;
        _replica = replica;
        _driver = driver;
        _transport = TensorChannels.Get(Context.System).Transport;
        _layout = RunRecipe.Layout(spec);
        Receive<LoadStep>(OnLoadStep);
    }

    public static Props Props(string runId, int attempt, RunSpec spec, int replica, IActorRef driver, WorkerSettings settings) =>
        Akka.Actor.Props.Create(() => new DataLoader(runId, attempt, spec, replica, driver)).WithDispatcher(settings.Dispatcher);

    protected override void PreStart()
    {
        try
        {
            _data = SharedTrainingData.Acquire(_spec.Data.Path, _spec.Model, RunRecipe.DataOptions(_spec));
            _driver.Tell(new LoaderReady(_runId, _attempt, _replica));
        }
        catch (Exception e)
        {
            _log.Error(e, "run {0}: the data loader of replica {1} could not open {2}", _runId, _replica, _spec.Data.Path);
            _driver.Tell(new LoaderFailed(_runId, _attempt, _replica, $"{e.GetType().Name}: {e.Message}"));
            Context.Stop(Self);
        }
    }

    void OnLoadStep(LoadStep load)
    {
        if (load.Attempt != _attempt || _data is null) return;
        try
        {
            Load(load);
        }
        catch (ReceiverGone e)
        {
            // The worker's entity stopped (its inbox went with it) before the driver aborted the attempt.
            _log.Warning("run {0}: the data loader of replica {1} lost a receiver on step {2}: {3}", _runId, _replica, load.Step, e.Message);
            _driver.Tell(new LoaderFailed(_runId, _attempt, _replica, $"step {load.Step}: {e.Message}", Retryable: true));
        }
        catch (Exception e)
        {
            // Bad data fails the same way on every attempt: the run fails, naming the step (a restart would not help).
            _log.Error(e, "run {0}: the data loader of replica {1} failed on step {2}", _runId, _replica, load.Step);
            _driver.Tell(new LoaderFailed(_runId, _attempt, _replica, $"step {load.Step}: {e.GetType().Name}: {e.Message}"));
        }
    }

    void Load(LoadStep load)
    {
        var p = _spec.Parallel;
        var data = _data!.Data;
        var plan = data.StepAt(load.StartPosition, _layout);
        foreach (var microBatch in plan.ForReplica(_replica))
        {
            using var scope = NewDisposeScope();
            var batch = data.Collator.Collate(microBatch);
            for (int t = 0; t < p.Tensor; t++)
            {
                Send(0, t, load, batch.Index, BatchPart.InputIds, batch.InputIds);
                Send(p.Pipeline - 1, t, load, batch.Index, BatchPart.Labels, batch.Labels);
                for (int s = 0; s < p.Pipeline; s++)
                {
                    Send(s, t, load, batch.Index, BatchPart.Positions, batch.Positions);
                    if (batch.SegmentIds is { } segments) Send(s, t, load, batch.Index, BatchPart.SegmentIds, segments);
                }
            }
        }
    }

    /// <summary>Each destination gets a tensor of its own: in-process, the receiver takes this very object and frees it.</summary>
    void Send(int stage, int rank, LoadStep load, int microBatch, BatchPart part, Tensor tensor)
    {
        var to = new WorkerId(_runId, _replica, stage, rank);
        try
        {
            _transport.Send(to, BatchTags.For(load.Attempt, load.Step, microBatch, part, _runId, _replica), tensor.clone());
        }
        catch (Exception e) when (e is KeyNotFoundException or ObjectDisposedException)
        {
            throw new ReceiverGone($"worker {to} is gone: {e.Message}", e);
        }
    }

    sealed class ReceiverGone(string message, Exception inner) : Exception(message, inner);

    protected override void PostStop()
    {
        _data?.Dispose();
        _data = null;
    }
}
