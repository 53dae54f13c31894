namespace Runtime.Cluster.RunSpecs;

/// <summary>One thing wrong with a run spec: the full key (<c>run.train.lr</c>) and what is wrong with it.</summary>
public sealed record SpecProblem(string Key, string Message)
{
    public override string ToString() => Message.StartsWith(Key, StringComparison.Ordinal) ? Message : $"{Key}: {Message}";
}

/// <summary>A run spec refused before anything starts; <see cref="Problems"/> names every key at fault.</summary>
public sealed class RunSpecException : Exception
{
    public RunSpecException(string source, IReadOnlyList<SpecProblem> problems)
        : base(Describe(source, problems))
    {
        Origin = source;
        Problems = problems;
    }

    /// <summary>The spec file (or "--set", or the run id) the problems were found in.</summary>
    public string Origin { get; }

    public IReadOnlyList<SpecProblem> Problems { get; }

    public static string Describe(string source, IReadOnlyList<SpecProblem> problems) =>
        problems.Count == 1
            ? $"{source}: {problems[0]}"
            : $"{source}: {problems.Count} problems:\n" + string.Join("\n", problems.Select(p => "  " + p));
}
