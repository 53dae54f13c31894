using Akka.Actor;
using Npgsql;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.Support;
using Runtime.Model.Config;

namespace Runtime.Cluster.Tests.Runs;

/// <summary>
/// A run's coordinator, sharded on a real node, survives the node: the node leaves (its actor system terminates), a new
/// node starts on the same journal, sharding brings the remembered coordinator back without being asked, and the
/// coordinator recovers the run from the journal alone. On SQLite (the node's data folder) and on PostgreSQL.
/// </summary>
public class JournalRestartTests
{
    static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Sqlite_journal_survives_a_restart_of_the_node()
    {
        using var dir = new TempDir();
        await Scenario(dir, TestNodes.Options(dir["node"], slots: 2) with { ConfigFiles = [Repo.Hocon("persistence-sqlite.conf")] });
        Assert.True(File.Exists(dir["node/journal.db"]));
    }

    [PostgresFact]
    public async Task Postgres_journal_survives_a_restart_of_the_node()
    {
        using var dir = new TempDir();
        await using var database = await ScratchDatabase.CreateAsync(Environment.GetEnvironmentVariable(PostgresFactAttribute.Variable)!);
        await Scenario(dir, TestNodes.Options(dir["node"], slots: 2) with
        {
            ConfigFiles = [Repo.Hocon("persistence-postgres.conf")],
            Environment = name => name == PostgresFactAttribute.Variable ? database.ConnectionString : null,
        });
        Assert.True(await database.CountAsync("SELECT COUNT(*) FROM journal WHERE persistence_id = 'run-coordinator-restart'") >= 6);
        Assert.False(File.Exists(dir["node/journal.db"])); // nothing went to SQLite
    }

    static async Task Scenario(TempDir dir, NodeOptions options)
    {
        Fixtures.Model(dir["tiny"], LlamaPresets.Tiny);
        // 256-token rows: the tiny preset's plan at the default 4096 (13 GB of logits) would not fit the node's 8 GiB slots.
        var spec = RunSpecParser.Parse("run { name = \"restart\", model = \"tiny\", data.path = \"train.jsonl\", data.max-seq-length = 256 }",
            "restart.conf", dir.Path);
        Fixtures.Data(spec.Data.Path);
        const string id = "restart";

        RunStatus before;
        await using (var node = await TestNodes.StartUp(options))
        {
            var runs = node.RunCoordinators;
            Assert.Equal(new RunAccepted(id), await runs.Ask<IRunReply>(new SubmitRun(id, spec), AskTimeout));
            var bad = await runs.Ask<IRunReply>(new SubmitRun("too-wide", spec with { Parallel = spec.Parallel with { Data = 3 } }), AskTimeout);
            Assert.Equal("run.parallel", Assert.Single(Assert.IsType<RunRejected>(bad).Problems).Key); // 3 workers, 2 slots

            foreach (var command in new IRunCommand[]
                     {
                         new WorkersReady(id, 1),
                         new RecordStep(id, 1, 1, 2.75, 512, 1e-4, 0.9, 0.5),
                         new RecordStep(id, 1, 2, 2.5, 512, 2e-4, 0.8, 0.5),
                         new CommitCheckpoint(id, 1, 2, "/runs/restart/checkpoints/step-2/manifest.json", 8),
                         new RecordStep(id, 1, 3, 2.25, 512, 2e-4, 0.7, 0.5),
                     })
                Assert.Equal(new RunCommandAccepted(id, 1), await runs.Ask<IRunReply>(command, AskTimeout));
            before = await runs.Ask<RunStatus>(new GetRunStatus(id), AskTimeout);
            Assert.Equal((RunPhase.Running, 3L), (before.Phase, before.LastStep));
        } // leaves the cluster; the system terminates

        await using (var node = await TestNodes.StartUp(options with { }))
        {
            // Remembered: sharding restarts the coordinator by itself, before anyone asks about the run.
            await TestNodes.Eventually(() => TestNodes.Hosts(node.RunCoordinators, id), "the remembered run coordinator to be restarted", 30);

            var after = await node.RunCoordinators.Ask<RunStatus>(new GetRunStatus(id), AskTimeout);
            Assert.Equal(new CommittedCheckpoint(2, "/runs/restart/checkpoints/step-2/manifest.json", 8), after.LastCheckpoint);
            Assert.Equal(spec, after.Spec);
            Assert.Equal(1536, after.TokensProcessed);
            // It was active when its node went away: a new attempt resumes from the committed checkpoint.
            Assert.Equal((RunPhase.Starting, 2, 2L, "the run coordinator restarted"), (after.Phase, after.Attempt, after.LastStep, after.Reason));
            Assert.Equal(new StaleAttempt(id, 1, 2), await node.RunCoordinators.Ask<IRunReply>(new RecordStep(id, 1, 4, 2.0, 512, 2e-4, 0.7, 0.5), AskTimeout));

            // The refused run left nothing behind.
            Assert.Equal(RunPhase.None, (await node.RunCoordinators.Ask<RunStatus>(new GetRunStatus("too-wide"), AskTimeout)).Phase);
        }
    }

    /// <summary>A database of its own for one test run, dropped afterwards.</summary>
    sealed class ScratchDatabase : IAsyncDisposable
    {
        readonly string _admin;
        readonly string _name;

        ScratchDatabase(string admin, string name, string connectionString)
        {
            _admin = admin;
            _name = name;
            ConnectionString = connectionString;
        }

        public string ConnectionString { get; }

        public static async Task<ScratchDatabase> CreateAsync(string admin)
        {
            var name = "rt_test_" + Guid.NewGuid().ToString("N")[..12];
            await using (var connection = new NpgsqlConnection(admin))
            {
                await connection.OpenAsync();
                await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
                await create.ExecuteNonQueryAsync();
            }
            var builder = new NpgsqlConnectionStringBuilder(admin) { Database = name };
            return new ScratchDatabase(admin, name, builder.ConnectionString);
        }

        public async Task<long> CountAsync(string sql)
        {
            await using var connection = new NpgsqlConnection(ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            return Convert.ToInt64(await command.ExecuteScalarAsync());
        }

        public async ValueTask DisposeAsync()
        {
            NpgsqlConnection.ClearAllPools();
            await using var connection = new NpgsqlConnection(_admin);
            await connection.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{_name}\" WITH (FORCE)", connection);
            await drop.ExecuteNonQueryAsync();
        }
    }
}
