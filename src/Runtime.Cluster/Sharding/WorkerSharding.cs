using Akka.Actor;
using Akka.Cluster.Sharding;
using Runtime.Cluster.Configuration;

namespace Runtime.Cluster.Sharding;

/// <summary>A message for one worker entity.</summary>
public interface IWorkerMessage
{
    WorkerId Worker { get; }
}

/// <summary>Entity id = shard id = the worker id's text: one shard per worker, so slot placement decides per worker.</summary>
public sealed class WorkerMessageExtractor : IMessageExtractor
{
    public string? EntityId(object message) => message switch
    {
        IWorkerMessage m => m.Worker.ToString(),
        _ => null,
    };

    public object? EntityMessage(object message) => message;

    [Obsolete("Use ShardId(string, object?) instead.")]
    public string? ShardId(object message) => EntityId(message);

    public string ShardId(string entityId, object? messageHint = null) => entityId;
}

/// <summary>
/// Starts a worker entity type on nodes with the worker role, placed by <see cref="SlotAwareAllocationStrategy"/>.
/// Workers are not remembered entities: after a node is lost, the run's coordinator starts a new attempt and sends
/// its workers what they need, so a worker restarted by sharding on its own would only come back with a stale attempt.
/// </summary>
public static class WorkerSharding
{
    public static Task<IActorRef> StartAsync(
        ActorSystem system, string typeName, Func<string, Props> entityProps, RuntimeSettings runtime, Func<string, bool>? isReleased = null)
    {
        var sharding = ClusterSharding.Get(system); // first: it adds sharding's reference settings the next line reads
        var settings = ClusterShardingSettings.Create(system)
            .WithRole(runtime.Sharding.WorkerRole)
            .WithRememberEntities(false);
        return sharding.StartAsync(
            typeName, entityProps, settings, new WorkerMessageExtractor(), new SlotAwareAllocationStrategy(isReleased), PoisonPill.Instance);
    }
}
