using Akka.Actor;
using Akka.Cluster.Sharding;
using Runtime.Cluster.Configuration;

namespace Runtime.Cluster.Runs;

/// <summary>
/// Run coordinators as a sharded entity type: one entity per run id, remembered (restarted after a crash or a
/// hand-off, the set kept in the SQL journal per reference.conf), hosted by nodes with the coordinator role and
/// reached through a proxy elsewhere.
/// </summary>
public static class RunCoordinatorSharding
{
    public const string TypeName = "run-coordinator";

    /// <summary>Starts the region (or, on a node without the coordinator role, a proxy) and returns it.</summary>
    public static Task<IActorRef> StartAsync(ActorSystem system, RuntimeSettings runtime, RunCoordinatorSetup setup)
    {
        var sharding = ClusterSharding.Get(system); // first: it adds sharding's reference settings the next line reads
        var settings = ClusterShardingSettings.Create(system)
            .WithRole(runtime.Sharding.CoordinatorRole)
            .WithRememberEntities(true);
        return sharding.StartAsync(
            TypeName,
            runId => RunCoordinator.Props(runId, setup),
            settings,
            new RunMessageExtractor(runtime.Sharding.MaxShards));
    }

    /// <summary>Routes every <see cref="IRunCommand"/> by its run id.</summary>
    public sealed class RunMessageExtractor(int maxShards) : HashCodeMessageExtractor(maxShards)
    {
        public override string? EntityId(object message) => message switch
        {
            IRunCommand command => command.RunId,
            _ => null,
        };
    }
}
