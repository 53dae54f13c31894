using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;

namespace Runtime.Cluster.Driving;

/// <summary>
/// Sends a run's progress events to the cluster-wide topic <see cref="RunProgressTopic.For"/> (any node may
/// subscribe) and to the local event stream (subscribers in the driver's own process see them without the topic's
/// registry having to spread first, e.g. `rt finetune`'s in-process node).
/// </summary>
public sealed class RunProgressPublisher(ActorSystem system, string runId)
{
    readonly IActorRef _mediator = DistributedPubSub.Get(system).Mediator;
    readonly string _topic = RunProgressTopic.For(runId);

    public void Publish(IRunProgress progress)
    {
        system.EventStream.Publish(progress);
        _mediator.Tell(new Publish(_topic, progress));
    }
}
