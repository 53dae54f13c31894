namespace Runtime.Training.Data;

/// <summary>A token cache file that cannot be read (not a cache, another format version, corrupt, cut short).</summary>
public sealed class TokenCacheException : IOException
{
    public TokenCacheException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
        Problem = problem;
    }

    public string Path { get; }

    public string Problem { get; }
}
