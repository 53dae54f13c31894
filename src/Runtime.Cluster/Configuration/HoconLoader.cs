using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Runtime.Cluster.Configuration;

/// <summary>
/// Reads HOCON with Akka's own parser (<see cref="ConfigurationFactory"/>) plus what Runtime's files need from it:
/// environment variables (<c>${?RUNTIME_POSTGRES}</c>, see <see cref="HoconText.SubstituteEnvironment"/>),
/// <c>include "file.conf"</c> relative to the including file, and syntax errors that name the file and line.
/// </summary>
public static class HoconLoader
{
    /// <summary>The process environment; tests pass their own lookup instead.</summary>
    public static readonly Func<string, string?> ProcessEnvironment = Environment.GetEnvironmentVariable;

    public static Config LoadFile(string path, Func<string, string?>? environment = null)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new HoconException($"{path}: no such file");
        return new Config(ParseRoot(File.ReadAllText(full), full, Path.GetDirectoryName(full), environment ?? ProcessEnvironment, [full]));
    }

    /// <param name="source">Names the text in errors (a file path, "--set", ...).</param>
    /// <param name="baseDirectory">Where includes are looked up; the working directory when null.</param>
    public static Config Parse(string text, string source, string? baseDirectory = null, Func<string, string?>? environment = null) =>
        new(ParseRoot(text, source, baseDirectory, environment ?? ProcessEnvironment, []));

    static HoconRoot ParseRoot(string text, string source, string? baseDirectory, Func<string, string?> environment, HashSet<string> including)
    {
        var prepared = HoconText.NormalizeSeparators(HoconText.SubstituteEnvironment(text, source, environment), source);
        try
        {
            return Parser.Parse(prepared, include => Include(include, source, baseDirectory, environment, including));
        }
        catch (Exception e) when (e is FormatException or ConfigurationException)
        {
            var firstLine = e.Message.Split('\n', 2)[0].Trim();
            throw new HoconException($"{source}{HoconText.Where(prepared, e.Message)}: {firstLine}", e);
        }
    }

    static HoconRoot Include(string include, string source, string? baseDirectory, Func<string, string?> environment, HashSet<string> including)
    {
        var full = Path.GetFullPath(include, baseDirectory ?? Directory.GetCurrentDirectory());
        if (!File.Exists(full)) throw new HoconException($"{source}: include \"{include}\": no such file ({full})");
        if (!including.Add(full)) throw new HoconException($"{source}: include \"{include}\" includes itself ({full})");
        try
        {
            return ParseRoot(File.ReadAllText(full), full, Path.GetDirectoryName(full), environment, including);
        }
        finally
        {
            including.Remove(full);
        }
    }
}
