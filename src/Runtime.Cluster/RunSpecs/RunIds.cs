using System.Text.RegularExpressions;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// Run ids (and run names, which are the default id): safe as a persistence id, a sharding entity id, a path
/// segment of a worker id (<c>run/&lt;id&gt;/&lt;d&gt;.&lt;p&gt;.&lt;t&gt;</c>) and a folder name.
/// </summary>
public static partial class RunIds
{
    public const string Rule = "must be 1 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";

    public static bool IsValid(string? id) => id is not null && Pattern().IsMatch(id);

    public static string Check(string? id) =>
        IsValid(id) ? id! : throw new ArgumentException($"run id \"{id}\" {Rule}", nameof(id));

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex Pattern();
}
