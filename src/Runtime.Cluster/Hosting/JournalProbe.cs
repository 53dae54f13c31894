using Akka.Actor;
using Akka.Persistence;

namespace Runtime.Cluster.Hosting;

/// <summary>
/// Asks the node's journal to replay an empty stream once at start. The SQL journal creates its tables (auto-initialize)
/// before it answers, so a node that reports itself up has a working journal, and a misconfigured one (a wrong
/// PostgreSQL connection string, an unwritable SQLite folder) fails at start, naming the cause, instead of at the
/// first run submitted to it.
/// </summary>
public static class JournalProbe
{
    const string ProbePersistenceId = "runtime-node-journal-probe";

    public static async Task EnsureReadyAsync(ActorSystem system, TimeSpan timeout)
    {
        var journal = Persistence.Instance.Apply(system).JournalFor(null);
        object reply;
        try
        {
            reply = await journal.Ask<object>(
                (IActorRef replyTo) => new ReplayMessages(0, 0, 0, ProbePersistenceId, replyTo), timeout, CancellationToken.None);
        }
        catch (AskTimeoutException)
        {
            throw new InvalidOperationException($"the journal did not answer within {timeout.TotalSeconds:F0} s (akka.persistence.journal)");
        }
        if (reply is ReplayMessagesFailure failure)
            throw new InvalidOperationException($"the journal cannot be used: {failure.Cause.Message}", failure.Cause);
    }
}
