using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Configuration;

namespace Runtime.Cluster.Tests.Configuration;

/// <summary>Torch actors (trainers, data loaders) run on runtime.worker.dispatcher: one dedicated thread each.</summary>
public sealed class WorkerDispatcherTests : Akka.TestKit.Xunit2.TestKit
{
    public WorkerDispatcherTests()
        : base(ConfigurationFactory.ParseString("akka.actor.provider = local").WithFallback(RuntimeConfig.Reference)) { }

    sealed record Where;

    sealed class ThreadReporter : ReceiveActor
    {
        public ThreadReporter() => Receive<Where>(_ => Sender.Tell((Environment.CurrentManagedThreadId, Thread.CurrentThread.IsThreadPoolThread)));
    }

    [Fact]
    public async Task Each_actor_on_the_worker_dispatcher_keeps_one_thread_of_its_own()
    {
        var dispatcher = RuntimeSettings.From(Sys.Settings.Config).Worker.Dispatcher;
        var a = Sys.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(dispatcher));
        var b = Sys.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(dispatcher));
        var threadsOfA = new HashSet<int>();
        var threadsOfB = new HashSet<int>();
        for (int i = 0; i < 5; i++)
        {
            var (ta, poolA) = await a.Ask<(int, bool)>(new Where(), TimeSpan.FromSeconds(5));
            var (tb, poolB) = await b.Ask<(int, bool)>(new Where(), TimeSpan.FromSeconds(5));
            Assert.False(poolA || poolB);
            threadsOfA.Add(ta);
            threadsOfB.Add(tb);
            await Task.Delay(20); // give a pooled dispatcher the chance to move the actor
        }
        Assert.Single(threadsOfA);
        Assert.Single(threadsOfB);
        Assert.NotEqual(threadsOfA.Single(), threadsOfB.Single());
    }
}
