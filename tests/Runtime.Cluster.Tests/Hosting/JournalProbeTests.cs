using Runtime.Cluster.Hosting;
using Runtime.Cluster.Tests.Support;

namespace Runtime.Cluster.Tests.Hosting;

/// <summary>A node checks its journal before it reports itself up.</summary>
public class JournalProbeTests
{
    [Fact]
    public async Task A_started_node_has_created_its_sqlite_journal()
    {
        using var dir = new TempDir();
        await using var node = await TestNodes.StartUp(TestNodes.Options(dir.Path, 1));
        Assert.True(File.Exists(Path.Combine(dir.Path, node.Settings.Sqlite.JournalFile)), "the journal file exists once the node is up");
    }

    [Fact]
    public async Task A_node_whose_journal_cannot_be_reached_fails_at_start_saying_so()
    {
        using var dir = new TempDir();
        // Port 1 on loopback: nothing listens there, so PostgreSQL's connection is refused at once.
        var options = TestNodes.Options(dir.Path, 1) with
        {
            ConfigFiles = [Repo.Hocon("persistence-postgres.conf")],
            Environment = name => name == "RUNTIME_POSTGRES" ? "Host=127.0.0.1;Port=1;Username=x;Password=x;Database=x;Timeout=3" : null,
            Overrides = TestNodes.Quiet.WithFallback(Akka.Configuration.ConfigurationFactory.ParseString("runtime.node.journal-start-timeout = 5s")),
        };
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => RuntimeNode.StartAsync(options));
        Assert.Contains("journal", error.Message);
    }
}
