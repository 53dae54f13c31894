using Akka.Actor;
using Akka.Event;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Sharding;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;
using TorchSharp;

namespace Runtime.Cluster.Workers;

/// <summary>
/// The part of a worker that runs torch: it owns the worker's <see cref="StageWorker"/> and runs every handler to
/// the end on its own dedicated thread (a PinnedDispatcher, runtime.worker.dispatcher), because dispose scopes and
/// grad mode are thread-local and a step blocks while it waits for tensors. Its parent, the worker entity, stays
/// responsive meanwhile and aborts a step by cancelling the inbox. Replies go to the sender of the command (the
/// run's driver: the entity forwards commands).
/// </summary>
public sealed class WorkerTrainer : ReceiveActor
{
    /// <summary>Start (or restart) the worker for an attempt. Sent by the entity, which keeps the sender (the driver).</summary>
    internal sealed record Start(InitializeWorker Command, string Node);

    readonly WorkerId _id;
    readonly WorkerChannels _channels;
    readonly int _torchThreads;
    readonly ILoggingAdapter _log = Context.GetLogger();
    StageWorker? _worker;
    WorkerReady? _ready;
    int _attempt;

    public WorkerTrainer(WorkerId id, WorkerChannels channels, int torchThreads)
    {
        _id = id;
        _channels = channels;
        _torchThreads = torchThreads;
        Receive<Start>(OnStart);
        Receive<TrainStep>(OnStep);
        Receive<PrepareCheckpoint>(OnPrepare);
    }

    public static Props Props(WorkerId id, WorkerChannels channels, int torchThreads, WorkerSettings settings) =>
        Akka.Actor.Props.Create(() => new WorkerTrainer(id, channels, torchThreads)).WithDispatcher(settings.Dispatcher);

    protected override void PreStart()
    {
        // libtorch's intra-op pool is process-wide; every worker of the node sets the same number (runtime.worker.torch-threads).
        if (torch.get_num_threads() != _torchThreads) torch.set_num_threads(_torchThreads);
    }

    void OnStart(Start start)
    {
        var command = start.Command;
        if (_ready is not null && command.Attempt == _attempt)
        {
            // The driver asks again when an answer is late (see RunDriver's placing): answer again, keep what is loaded.
            Sender.Tell(_ready);
            return;
        }
        _worker?.Dispose();
        _worker = null;
        _ready = null;
        _attempt = command.Attempt;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            _worker = new StageWorker(_id, command.Attempt, command.Spec, command.Slice.ToSpec(), command.TotalSteps, command.ResumeCheckpoint, _channels);
            _ready = new WorkerReady(_id, command.Attempt, start.Node, _worker.TrainableParameters, clock.Elapsed.TotalSeconds);
            Sender.Tell(_ready);
        }
        catch (Exception e)
        {
            _log.Error(e, "worker {0}: loading attempt {1} failed", _id, command.Attempt);
            Sender.Tell(new WorkerFailed(_id, command.Attempt, $"worker {_id}: {e.GetType().Name}: {e.Message}", Retryable: false));
        }
    }

    void OnStep(TrainStep step)
    {
        if (_worker is null || step.Attempt != _attempt) return; // a stale attempt's step, or a failed load already reported
        try
        {
            var result = _worker.RunStep(step.Step, step.LabelledTokens, step.MeasureMemory);
            Sender.Tell(new StepDone(_id, step.Attempt, step.Step, result.LossSum, result.LabelledTokens, result.InputTokens,
                result.GradNorm, result.LearningRate, result.Timings, _worker.LiveTensors, Environment.WorkingSet, result.Memory));
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // The attempt was aborted (the inbox cancelled) or the worker is stopping (the inbox closed).
            _worker.DropStep();
            Sender.Tell(new StepAborted(_id, step.Attempt, step.Step, e.Message));
        }
        catch (TimeoutException e)
        {
            // A peer never sent what this worker waits for: it is gone, or stuck. Another attempt may well succeed.
            _worker.DropStep();
            Sender.Tell(new WorkerFailed(_id, step.Attempt, $"worker {_id}, step {step.Step}: {e.Message}", Retryable: true));
        }
        catch (Exception e)
        {
            _worker.DropStep();
            _log.Error(e, "worker {0}: step {1} failed", _id, step.Step);
            Sender.Tell(new WorkerFailed(_id, step.Attempt, $"worker {_id}, step {step.Step}: {e.GetType().Name}: {e.Message}", Retryable: false));
        }
    }

    void OnPrepare(PrepareCheckpoint prepare)
    {
        if (_worker is null || prepare.Attempt != _attempt) return;
        try
        {
            Sender.Tell(new CheckpointShardWritten(_id, prepare.Attempt, prepare.Step, _worker.WriteShard(prepare.Folder)));
        }
        catch (Exception e)
        {
            _log.Error(e, "worker {0}: writing its shard of checkpoint {1} failed", _id, prepare.Step);
            Sender.Tell(new WorkerFailed(_id, prepare.Attempt, $"worker {_id}, checkpoint {prepare.Step}: {e.GetType().Name}: {e.Message}", Retryable: false));
        }
    }

    protected override void PostStop()
    {
        _worker?.Dispose();
        _worker = null;
    }
}
