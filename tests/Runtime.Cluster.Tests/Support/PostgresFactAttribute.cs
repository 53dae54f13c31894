namespace Runtime.Cluster.Tests.Support;

/// <summary>A test that needs a PostgreSQL server: skipped, saying how to run it, when RUNTIME_POSTGRES is unset.</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public const string Variable = "RUNTIME_POSTGRES";

    public PostgresFactAttribute()
    {
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(Variable)))
            Skip = $"needs PostgreSQL: set {Variable}=\"Host=127.0.0.1;Port=5432;Username=postgres;Password=postgres;Database=postgres\" (.ci/run does)";
    }
}
