using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Runs;

namespace Runtime.Cluster.Hosting;

/// <summary>Why a node's actor system ended; the numbers are `rt node`'s exit codes.</summary>
public enum NodeExit
{
    /// <summary>It left the cluster gracefully (SIGTERM, Ctrl+C, a leave command, or a plain terminate).</summary>
    Left = 0,

    /// <summary>Anything else (it did not shut down through CoordinatedShutdown, or for a reason not listed here).</summary>
    Failed = 1,

    /// <summary>The cluster downed it (split-brain resolver, or an operator's down command).</summary>
    Downed = 2,

    /// <summary>It gave up joining its seed nodes (akka.cluster.shutdown-after-unsuccessful-join-seed-nodes).</summary>
    JoinFailed = 3,
}

/// <summary>
/// One Runtime cluster node: an ActorSystem named "runtime" built from <see cref="NodeConfig"/>, joined to its seed
/// nodes (or to itself when it has none, which makes a one-node cluster), advertising its worker slots as roles, and
/// hosting the run coordinators' and the run workers' shard regions. Leaving is graceful: CoordinatedShutdown leaves the cluster and hands
/// shards off before the system terminates.
/// </summary>
public sealed class RuntimeNode : IAsyncDisposable
{
    readonly TaskCompletionSource _up = new(TaskCreationOptions.RunContinuationsAsynchronously);

    RuntimeNode(ActorSystem system, NodeConfig config)
    {
        System = system;
        Config = config.Config;
        Settings = config.Settings;
        Slots = config.Slots;
        Cluster = Akka.Cluster.Cluster.Get(system);
        Cluster.RegisterOnMemberUp(() => _up.TrySetResult());
        system.WhenTerminated.ContinueWith(terminated =>
        {
            if (_up.TrySetException(new InvalidOperationException($"node {Address} terminated before it became Up")))
                _ = _up.Task.Exception; // observed here: a node that never came up is reported by its exit, not by the finalizer
        }, TaskScheduler.Default);
    }

    public ActorSystem System { get; }

    public Akka.Cluster.Cluster Cluster { get; }

    public Config Config { get; }

    public RuntimeSettings Settings { get; }

    public NodeSlots Slots { get; }

    public Address Address => Cluster.SelfAddress;

    /// <summary>The run coordinators' shard region (a proxy on nodes without the coordinator role).</summary>
    public IActorRef RunCoordinators { get; private set; } = ActorRefs.Nobody;

    /// <summary>The run workers' shard region (a proxy on nodes without the worker role).</summary>
    public IActorRef RunWorkers { get; private set; } = ActorRefs.Nobody;

    /// <summary>Completes when this node is an Up member; faults if the system terminates first.</summary>
    public Task WhenUp => _up.Task;

    public Task WhenTerminated => System.WhenTerminated;

    public static async Task<RuntimeNode> StartAsync(NodeOptions options)
    {
        var config = NodeConfig.Build(options);
        Directory.CreateDirectory(config.Settings.Node.DataDir);
        var system = ActorSystem.Create(NodeConfig.SystemName, config.Config);
        try
        {
            var node = new RuntimeNode(system, config);
            await JournalProbe.EnsureReadyAsync(system, config.Settings.Node.JournalStartTimeout);
            if (node.Cluster.Settings.SeedNodes.Count == 0) node.Cluster.Join(node.Cluster.SelfAddress);
            var setup = new RunCoordinatorSetup(
                config.Settings.RunCoordinator, new ClusterSlotInventory(system, config.Settings.Sharding.WorkerRole), options.RunDriver);
            node.RunCoordinators = await RunCoordinatorSharding.StartAsync(system, config.Settings, setup);
            node.RunWorkers = await Workers.RunWorkers.StartAsync(system, config.Settings);
            return node;
        }
        catch
        {
            await system.Terminate();
            throw;
        }
    }

    /// <summary>Leaves the cluster and terminates the system (CoordinatedShutdown); completes when it has.</summary>
    public Task LeaveAsync() => CoordinatedShutdown.Get(System).Run(CoordinatedShutdown.ClusterLeavingReason.Instance);

    /// <summary>Why the system terminated (meaningful once <see cref="WhenTerminated"/> has completed).</summary>
    public NodeExit Exit => CoordinatedShutdown.Get(System).ShutdownReason switch
    {
        CoordinatedShutdown.ClusterLeavingReason or CoordinatedShutdown.ActorSystemTerminateReason => NodeExit.Left,
        CoordinatedShutdown.ClusterDowningReason => NodeExit.Downed,
        CoordinatedShutdown.ClusterJoinUnsuccessfulReason => NodeExit.JoinFailed,
        _ => NodeExit.Failed,
    };

    /// <summary>
    /// SIGTERM and SIGINT start a graceful leave instead of killing the process; a second signal during the leave
    /// kills it as usual. Dispose the result to restore the default behaviour.
    /// </summary>
    public IDisposable LeaveOnTerminationSignals(Action<PosixSignal>? onSignal = null)
    {
        int received = 0;
        void Handle(PosixSignalContext context)
        {
            if (Interlocked.Increment(ref received) > 1) return; // second signal: default action (terminate now)
            context.Cancel = true;
            onSignal?.Invoke(context.Signal);
            _ = LeaveAsync();
        }
        return new Registrations(
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle));
    }

    public async ValueTask DisposeAsync()
    {
        await LeaveAsync();
        await WhenTerminated;
    }

    sealed class Registrations(params IDisposable[] registrations) : IDisposable
    {
        public void Dispose()
        {
            foreach (var r in registrations) r.Dispose();
        }
    }
}
