namespace Runtime.Training.Data;

/// <summary>
/// A training data file that cannot be used as it is. <see cref="Exception.Message"/> starts with
/// <c>file:line:</c> (1-based line; no line when the problem is the whole file), so editors and terminals link to it.
/// </summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string file, long line, SkipReason reason, string problem)
        : base($"{file}:{line}: {problem}")
    {
        File = file;
        Line = line;
        Reason = reason;
        Problem = problem;
    }

    /// <summary>A problem with the file as a whole (empty, no usable rows).</summary>
    public DataFormatException(string file, string problem)
        : base($"{file}: {problem}")
    {
        File = file;
        Problem = problem;
    }

    public string File { get; }

    /// <summary>1-based line of the row; 0 when the problem is the whole file.</summary>
    public long Line { get; }

    /// <summary>The kind of problem, as counted when rows are skipped; null for whole-file problems.</summary>
    public SkipReason? Reason { get; }

    /// <summary>The message without the file and line.</summary>
    public string Problem { get; }
}
