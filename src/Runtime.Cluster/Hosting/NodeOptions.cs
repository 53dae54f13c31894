using Akka.Configuration;
using Runtime.Cluster.Runs;

namespace Runtime.Cluster.Hosting;

/// <summary>
/// How to start a node: HOCON files (later files override earlier ones) and the command-line overrides on top of
/// them. Null means "as the files say".
/// </summary>
public sealed record NodeOptions
{
    public IReadOnlyList<string> ConfigFiles { get; init; } = [];

    /// <summary>Replaces akka.cluster.seed-nodes ("akka.tcp://runtime@host:port").</summary>
    public IReadOnlyList<string>? Seeds { get; init; }

    /// <summary>Replaces akka.cluster.roles (slot roles are added by the node itself).</summary>
    public IReadOnlyList<string>? Roles { get; init; }

    public string? Hostname { get; init; }

    /// <summary>0: any free port.</summary>
    public int? Port { get; init; }

    /// <summary>"auto" or a whole number (runtime.node.slots).</summary>
    public string? Slots { get; init; }

    public string? DataDir { get; init; }

    /// <summary>Highest-priority settings (tests, embedding hosts).</summary>
    public Config? Overrides { get; init; }

    /// <summary>Environment variables for <c>${?NAME}</c> in the files.</summary>
    public Func<string, string?>? Environment { get; init; }

    public ISlotProbe SlotProbe { get; init; } = SystemSlotProbe.Instance;

    /// <summary>
    /// What drives a run's attempts once its coordinator has accepted it: <see cref="Driving.TrainingRunDriver"/> trains
    /// with workers; the default starts none (accepted runs wait), for nodes that only record runs, and tests.
    /// </summary>
    public IRunDriverFactory RunDriver { get; init; } = NoRunDriver.Instance;
}
