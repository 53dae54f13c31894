using Runtime.Cluster.Tests.Training;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>The micro model and data in a scratch folder, spec files over them, and the yardstick every layout is
/// compared with: the adapter `rt finetune` trains with one in-process worker in 6 steps (computed once).</summary>
public sealed class FinetuneFixture : IDisposable
{
    readonly ScratchFolder _folder = new();
    readonly Lazy<Dictionary<string, double[]>> _oneWorker;

    public FinetuneFixture()
    {
        Specs = new MicroSpec(new MicroRun(_folder["micro"]));
        _oneWorker = new(() =>
        {
            var (exit, stdout, stderr) = Rt.Invoke("finetune", Specs.Write("one-worker"));
            if (exit != 0) throw new InvalidOperationException($"the in-process one-worker run exited {exit}:\n{stdout}\n{stderr}");
            return MicroRun.Adapter(Specs.Adapter("one-worker"));
        }, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public MicroSpec Specs { get; }

    public string Folder => _folder.Path;

    /// <summary>The adapter of the 6-step micro spec trained by `rt finetune` with one in-process worker.</summary>
    public Dictionary<string, double[]> OneWorker => _oneWorker.Value;

    public void Dispose() => _folder.Dispose();
}

/// <summary>Finetune tests run one at a time: each trains, several start processes, and the machine has few cores.</summary>
[CollectionDefinition(Name)]
public sealed class FinetuneCollection : ICollectionFixture<FinetuneFixture>
{
    public const string Name = "rt finetune";
}

/// <summary>A writer that also hands every line to <paramref name="onLine"/> (to act when a step's line appears).</summary>
public sealed class LineWriter(Action<string> onLine) : StringWriter
{
    public override void WriteLine(string? value)
    {
        base.WriteLine(value);
        if (value is not null) onLine(value);
    }
}
