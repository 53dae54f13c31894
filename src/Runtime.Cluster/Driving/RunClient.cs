using System.Threading.Channels;
using Akka.Actor;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Driving;

/// <summary>
/// Submitting and following runs from code (what `rt finetune` and the command host build on): submit, status,
/// stop, a progress stream, and "run it and wait". Works from any node: coordinators are reached through the shard
/// region (or its proxy), progress through the cluster-wide topic.
/// </summary>
public sealed class RunClient(ActorSystem system, IActorRef coordinators)
{
    static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public static RunClient For(RuntimeNode node) => new(node.System, node.RunCoordinators);

    /// <summary>How often a watch asks the coordinator for the status besides listening to progress.</summary>
    public TimeSpan StatusPollInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Validates and submits <paramref name="spec"/> under <paramref name="runId"/> (default: the spec's name); throws
    /// <see cref="RunSpecException"/> naming every problem when the coordinator refuses it. Submitting the same spec
    /// under the same id again is accepted (a retry), another spec is refused.
    /// </summary>
    public async Task<string> SubmitAsync(RunSpec spec, string? runId = null, string? resumeFrom = null, CancellationToken cancellationToken = default)
    {
        var id = runId ?? spec.Name;
        var reply = await coordinators.Ask<IRunReply>(new SubmitRun(id, spec, resumeFrom), AskTimeout, cancellationToken);
        return reply switch
        {
            RunAccepted => id,
            RunRejected rejected => throw new RunSpecException(id, rejected.Problems),
            _ => throw new InvalidOperationException($"run {id}: unexpected answer {reply}"),
        };
    }

    public Task<RunStatus> StatusAsync(string runId, CancellationToken cancellationToken = default) =>
        coordinators.Ask<RunStatus>(new GetRunStatus(runId), AskTimeout, cancellationToken);

    /// <summary>
    /// Stops a run that has not finished; false when it had already finished. With <paramref name="checkpoint"/> (what
    /// Ctrl+C in `rt finetune` does) the step in flight finishes and is checkpointed before the run is recorded as
    /// stopped (<see cref="StopRun.Checkpoint"/>): the stop is then under way when this returns, and
    /// <see cref="WaitAsync"/> tells when it has happened. Without it the run stops at once, at its last committed
    /// checkpoint.
    /// </summary>
    public async Task<bool> StopAsync(string runId, string reason, bool checkpoint = false, CancellationToken cancellationToken = default)
    {
        var reply = await coordinators.Ask<IRunReply>(new StopRun(runId, reason, checkpoint), AskTimeout, cancellationToken);
        return reply is RunCommandAccepted;
    }

    /// <summary>
    /// Follows a run until it finishes: <paramref name="onProgress"/> sees its progress events (on a thread of the
    /// actor system: keep it short), and the result is the coordinator's final status (completed, failed or stopped).
    /// Cancelling stops the watch, not the run.
    /// </summary>
    public async Task<RunStatus> WaitAsync(string runId, Action<IRunProgress>? onProgress = null, CancellationToken cancellationToken = default)
    {
        using var watch = Watch(runId, subscribed: null);
        return await watch.WaitAsync(onProgress, cancellationToken);
    }

    /// <summary>
    /// Starts following <paramref name="runId"/> before it is submitted, so that none of its progress is missed: returns
    /// once this node's subscription has had time to reach the other nodes (two pub-sub gossip rounds when the cluster
    /// has other members). Submit afterwards, then hand <see cref="RunWatch.WaitAsync"/> the progress handler.
    /// </summary>
    public async Task<RunWatch> FollowAsync(string runId, CancellationToken cancellationToken = default)
    {
        var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var watch = Watch(runId, subscribed);
        try
        {
            await subscribed.Task.WaitAsync(AskTimeout, cancellationToken);
            if (Akka.Cluster.Cluster.Get(system).State.Members.Count > 1)
                await Task.Delay(2 * system.Settings.Config.GetTimeSpan("akka.cluster.pub-sub.gossip-interval", TimeSpan.FromSeconds(1)), cancellationToken);
        }
        catch
        {
            watch.Dispose();
            throw;
        }
        return watch;
    }

    RunWatch Watch(string runId, TaskCompletionSource? subscribed)
    {
        var progress = Channel.CreateUnbounded<IRunProgress>(new UnboundedChannelOptions { SingleReader = true });
        var finished = new TaskCompletionSource<RunStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var watcher = system.ActorOf(Props.Create(() => new RunWatcher(runId, coordinators, progress.Writer, finished, StatusPollInterval, subscribed)));
        return new RunWatch(watcher, progress.Reader, finished.Task);
    }

    /// <summary>
    /// Submits and follows a run to its end. Cancelling (Ctrl+C) stops the run keeping its work (the step in flight
    /// finishes and is checkpointed, then StopRun is recorded) and waits for the coordinator to record it, so the
    /// journal says what happened; a later submission with <c>resumeFrom: "latest"</c> continues from that checkpoint.
    /// </summary>
    public async Task<RunStatus> RunAsync(RunSpec spec, string? runId = null, string? resumeFrom = null, Action<IRunProgress>? onProgress = null,
        CancellationToken cancellationToken = default)
    {
        var id = runId ?? spec.Name;
        using (var watch = await FollowAsync(id, cancellationToken))
        {
            await SubmitAsync(spec, id, resumeFrom, cancellationToken);
            try
            {
                return await watch.WaitAsync(onProgress, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
        }
        await StopAsync(id, "stopped by the user", checkpoint: true);
        return await WaitAsync(id, onProgress, CancellationToken.None);
    }
}

/// <summary>A run followed from before its submission (<see cref="RunClient.FollowAsync"/>); disposing ends the watch.</summary>
public sealed class RunWatch : IDisposable
{
    readonly IActorRef _watcher;
    readonly ChannelReader<IRunProgress> _progress;
    readonly Task<RunStatus> _finished;

    internal RunWatch(IActorRef watcher, ChannelReader<IRunProgress> progress, Task<RunStatus> finished) =>
        (_watcher, _progress, _finished) = (watcher, progress, finished);

    /// <summary>
    /// Hands every progress event since the watch began to <paramref name="onProgress"/> (in order, on a pool thread)
    /// and returns the coordinator's final status. Cancelling ends the watch, not the run.
    /// </summary>
    public async Task<RunStatus> WaitAsync(Action<IRunProgress>? onProgress = null, CancellationToken cancellationToken = default)
    {
        await using var stop = cancellationToken.Register(Dispose);
        var pump = Task.Run(async () =>
        {
            await foreach (var p in _progress.ReadAllAsync(CancellationToken.None)) onProgress?.Invoke(p);
        }, CancellationToken.None);
        try
        {
            return await _finished;
        }
        finally
        {
            await pump;
        }
    }

    public void Dispose()
    {
        if (!_finished.IsCompleted) _watcher.Tell(PoisonPill.Instance);
    }
}
