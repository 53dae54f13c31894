using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Runtime.Cluster.Runs;

namespace Runtime.Cluster.Driving;

/// <summary>
/// Follows one run for a client: subscribes to its progress topic and asks its coordinator for the status now and
/// then (and at once when the driver says the run finished). Progress goes to <paramref name="progress"/>; the first
/// finished status completes <paramref name="finished"/> and ends the watch; <paramref name="subscribed"/> completes
/// when the local mediator has the subscription. Progress published on another node before the subscription has
/// spread there by gossip is missed (<see cref="RunClient.FollowAsync"/> waits for that); the status is the
/// coordinator's record and is not.
/// </summary>
internal sealed class RunWatcher : ReceiveActor, IWithTimers
{
    sealed class Poll
    {
        public static readonly Poll Instance = new();
    }

    readonly string _runId;
    readonly IActorRef _coordinators;
    readonly ChannelWriter<IRunProgress> _progress;
    readonly TaskCompletionSource<RunStatus> _finished;
    readonly TaskCompletionSource? _subscribed;

    public RunWatcher(string runId, IActorRef coordinators, ChannelWriter<IRunProgress> progress, TaskCompletionSource<RunStatus> finished,
        TimeSpan pollEvery, TaskCompletionSource? subscribed = null)
    {
        _subscribed = subscribed;
        _runId = runId;
        _coordinators = coordinators;
        _progress = progress;
        _finished = finished;
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(RunProgressTopic.For(runId), Self));
        Receive<SubscribeAck>(_ =>
        {
            _subscribed?.TrySetResult();
            Self.Tell(Poll.Instance);
        });
        Receive<IRunProgress>(p =>
        {
            if (p.RunId != _runId) return;
            _progress.TryWrite(p);
            if (p is RunFinished) Self.Tell(Poll.Instance);
        });
        Receive<Poll>(_ => _coordinators.Tell(new GetRunStatus(_runId)));
        Receive<RunStatus>(status =>
        {
            if (!status.IsFinished) return;
            _finished.TrySetResult(status);
            Context.Stop(Self);
        });
        Receive<Status.Failure>(_ => { });
        _pollEvery = pollEvery;
    }

    readonly TimeSpan _pollEvery;

    protected override void PreStart() => Timers.StartPeriodicTimer(nameof(Poll), Poll.Instance, _pollEvery);

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PostStop()
    {
        _progress.TryComplete();
        _finished.TrySetCanceled();
        _subscribed?.TrySetCanceled();
    }
}
