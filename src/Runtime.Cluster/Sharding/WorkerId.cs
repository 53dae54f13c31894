using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Runtime.Cluster.RunSpecs;

namespace Runtime.Cluster.Sharding;

/// <summary>
/// A worker of a run: data-parallel replica <see cref="Data"/>, pipeline stage <see cref="Pipeline"/>, tensor-parallel
/// rank <see cref="Tensor"/>. Its text, <c>run/&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c>, is both the sharding entity id and
/// the shard id (one shard per worker, so each worker is placed on its own).
/// </summary>
public readonly record struct WorkerId(string RunId, int Data, int Pipeline, int Tensor)
{
    public const string Prefix = "run/";

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}{RunId}/{Data}.{Pipeline}.{Tensor}");

    /// <summary>Workers that share a stage's tensor-parallel group (same run, replica and stage).</summary>
    public bool SameStage(WorkerId other) => RunId == other.RunId && Data == other.Data && Pipeline == other.Pipeline;

    /// <summary>Workers of the same data-parallel replica (its pipeline).</summary>
    public bool SameReplica(WorkerId other) => RunId == other.RunId && Data == other.Data;

    public static bool TryParse(string? text, [NotNullWhen(true)] out WorkerId? id)
    {
        id = null;
        if (text is null || !text.StartsWith(Prefix, StringComparison.Ordinal)) return false;
        int slash = text.LastIndexOf('/');
        if (slash <= Prefix.Length) return false;
        var runId = text[Prefix.Length..slash];
        var parts = text[(slash + 1)..].Split('.');
        if (!RunIds.IsValid(runId) || parts.Length != 3) return false;
        var n = new int[3];
        for (int i = 0; i < 3; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out n[i]) || parts[i].Length > 1 && parts[i][0] == '0')
                return false;
        id = new WorkerId(runId, n[0], n[1], n[2]);
        return true;
    }

    public static WorkerId Parse(string text) =>
        TryParse(text, out var id) ? id.Value : throw new FormatException($"\"{text}\" is not a worker id (run/<run id>/<d>.<p>.<t>)");
}
