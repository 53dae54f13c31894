using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Sharding;
using WorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Workers;

/// <summary>
/// A worker of a run as a sharded entity (id <c>run/&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c>, placed on a node with a free
/// slot by the slot-aware allocation). It does no torch work itself: its child <see cref="WorkerTrainer"/> does, on a
/// dedicated thread, while the entity stays free to act at once on what must not wait behind a running step:
/// <list type="bullet">
/// <item>attempts: it fences commands by attempt (an older attempt's command changes nothing) and moves the node's
/// inboxes of the run to a new attempt when one begins;</item>
/// <item>aborts: <see cref="AbortAttempt"/> cancels the inbox, so every wait of the step fails and the trainer drops it;</item>
/// <item>routes: <see cref="ConnectWorkers"/> tells the node's tensor router where the run's other workers live;</item>
/// <item>the replica's data loader: the first worker of a replica (stage 0, rank 0) hosts it, one per attempt.</item>
/// </list>
/// </summary>
public sealed class WorkerEntity : ReceiveActor
{
    readonly WorkerId _id;
    readonly TensorChannelsExtension _channels;
    readonly TensorInbox _inbox;
    readonly WorkerSettings _settings;
    readonly string _node;
    readonly IActorRef _trainer;
    readonly ILoggingAdapter _log = Context.GetLogger();
    int _attempt;
    IActorRef? _loader;

    public WorkerEntity(string entityId, WorkerSettings settings)
    {
        _id = WorkerId.Parse(entityId);
        _settings = settings;
        _channels = TensorChannels.Get(Context.System);
        var channelId = _id.ToChannel();
        _inbox = _channels.OpenInbox(channelId);
        var cluster = Akka.Cluster.Cluster.Get(Context.System);
        _node = cluster.SelfAddress.ToString();
        int threads = settings.ThreadsFor(Environment.ProcessorCount, NodeSlots.FromRoles(cluster.SelfRoles).Count);
        var channels = new WorkerChannels(channelId, _inbox, _channels.Transport, _channels.Settings.ReceiveTimeout,
            (kind, members) => _channels.CreateGroup(kind, members, channelId));
        _trainer = Context.ActorOf(WorkerTrainer.Props(_id, channels, threads, settings), "trainer");
        Context.Watch(_trainer);

        Receive<InitializeWorker>(OnInitialize);
        Receive<ConnectWorkers>(OnConnect);
        Receive<TrainStep>(c => ForwardIfCurrent(c));
        Receive<PrepareCheckpoint>(c => ForwardIfCurrent(c));
        Receive<AbortAttempt>(OnAbort);
        Receive<ReleaseWorker>(OnRelease);
        Receive<Terminated>(t =>
        {
            if (!t.ActorRef.Equals(_trainer)) return;
            // A worker without its trainer is no use to any attempt: stop, and let sharding start a fresh one on the
            // next message (the driver, watching the trainer, has seen it go and starts a new attempt).
            _log.Warning("worker {0}: its trainer stopped; the worker stops", _id);
            Context.Stop(Self);
        });
    }

    public static Props Props(string entityId, WorkerSettings settings) => Akka.Actor.Props.Create(() => new WorkerEntity(entityId, settings));

    void OnInitialize(InitializeWorker command)
    {
        if (command.Attempt < _attempt)
        {
            _log.Debug("worker {0}: ignoring attempt {1}'s initialize, at attempt {2}", _id, command.Attempt, _attempt);
            return;
        }
        if (command.Attempt > _attempt)
        {
            // A new attempt: whatever the old one still waits for fails now, and its tensors still queued here go. (Not
            // Cancel: another worker of the run on this node may already have moved this inbox to the new attempt, and
            // cancelling would kill the new attempt.)
            _channels.AdvanceAttempt(_id.RunId, command.Attempt);
            _attempt = command.Attempt;
            StartLoader(command);
        }
        _trainer.Tell(new WorkerTrainer.Start(command, _node), Sender);
    }

    void StartLoader(InitializeWorker command)
    {
        if (_loader is not null) Context.Stop(_loader);
        _loader = null;
        if (_id.Pipeline != 0 || _id.Tensor != 0) return;
        _loader = Context.ActorOf(
            DataLoader.Props(_id.RunId, command.Attempt, command.Spec, _id.Data, Sender, _settings),
            $"loader-{command.Attempt}");
    }

    void OnConnect(ConnectWorkers command)
    {
        if (command.Attempt != _attempt) return;
        var router = _channels.Router;
        var self = Akka.Actor.Address.Parse(_node);
        foreach (var placement in command.Placements)
        {
            var worker = placement.Worker.ToChannel();
            var node = Akka.Actor.Address.Parse(placement.Node);
            if (node == self)
            {
                router.ForgetRemote(worker);
                continue;
            }
            // An inbox left here by an earlier placement of that worker (its entity has moved) would shadow the route.
            if (router.FindInbox(worker) is { } stale && !worker.Equals(_id.ToChannel())) router.CloseInbox(stale.Owner);
            router.SetRemote(worker, node);
        }
        Sender.Tell(new WorkerConnected(_id, command.Attempt));
    }

    void ForwardIfCurrent(IWorkerCommand command)
    {
        if (command.Attempt == _attempt) _trainer.Forward(command);
        else _log.Debug("worker {0}: ignoring {1} of attempt {2}, at attempt {3}", _id, command.GetType().Name, command.Attempt, _attempt);
    }

    void OnAbort(AbortAttempt abort)
    {
        if (abort.Attempt != _attempt) return;
        _log.Info("worker {0}: aborting attempt {1}: {2}", _id, abort.Attempt, abort.Reason);
        // The inbox may already be at the next attempt (another worker of the run on this node heard of it first).
        _inbox.Cancel(abort.Attempt);
    }

    void OnRelease(ReleaseWorker release)
    {
        if (release.Attempt < _attempt) return;
        // Unblock a running step first: the trainer can only stop once its handler has returned.
        _inbox.Cancel(release.Attempt);
        Context.Parent.Tell(new Passivate(PoisonPill.Instance));
    }

    protected override void PostStop()
    {
        // The trainer (a child) has stopped by now; nothing here waits for tensors any more.
        _channels.Router.CloseInbox(_id.ToChannel());
    }
}
