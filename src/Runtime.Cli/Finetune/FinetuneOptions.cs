namespace Runtime.Cli.Finetune;

/// <summary>What `rt finetune` was asked to do (its command line, parsed).</summary>
public sealed record FinetuneOptions
{
    public required string SpecPath { get; init; }

    /// <summary><c>key=value</c> overrides of the spec, relative to <c>run</c>.</summary>
    public IReadOnlyList<string> Sets { get; init; } = [];

    /// <summary>Null: a fresh run. "latest" or a committed checkpoint folder: continue from it.</summary>
    public string? Resume { get; init; }

    /// <summary>Seed addresses of an existing cluster to join and train on; empty: an in-process node trains.</summary>
    public IReadOnlyList<string> Join { get; init; } = [];

    /// <summary>The run's id; null: the spec's name, or the first of name-2, name-3, ... the journal does not know yet.</summary>
    public string? RunId { get; init; }

    /// <summary>Cluster port of this process's node; null: any free port.</summary>
    public int? Port { get; init; }

    public string? Hostname { get; init; }

    /// <summary>Worker slots of the in-process node; null: the spec's data x pipeline x tensor workers.</summary>
    public int? Slots { get; init; }

    /// <summary>HOCON files with node settings (runtime.worker.torch-threads, ...), under the command line's.</summary>
    public IReadOnlyList<string> ConfigFiles { get; init; } = [];

    /// <summary>How long to wait for this node to become a member of the cluster given by <see cref="Join"/>.</summary>
    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Start the run even when its memory plan does not fit the smallest worker slot (run.admission.force = on).</summary>
    public bool Force { get; init; }

    /// <summary>The spec overrides to apply: <see cref="Sets"/>, then the force flag's.</summary>
    public IReadOnlyList<string> SpecSets => Force ? [.. Sets, "admission.force=on"] : Sets;

    public bool Joins => Join.Count > 0;
}
