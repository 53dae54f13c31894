using System.Globalization;

namespace Runtime.Bench;

/// <summary>`--name value` options with defaults; unknown names are errors so typos do not silently measure the default.</summary>
internal sealed class BenchOptions
{
    readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public BenchOptions(string[] args)
    {
        for (int i = 0; i < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                throw new ArgumentException($"expected '--name value' pairs, got '{string.Join(' ', args)}'");
            _values[args[i][2..]] = args[i + 1];
        }
    }

    public int Int(string name, int fallback) => Get(name, fallback, s => int.Parse(s, CultureInfo.InvariantCulture));

    public int[] Ints(string name, int[] fallback) =>
        Get(name, fallback, s => s.Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray());

    public string String(string name, string fallback) => Get(name, fallback, s => s);

    /// <summary>Throws for options nobody asked for.</summary>
    public void EnsureAllRead()
    {
        var unknown = _values.Keys.Except(_read).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"unknown option(s): {string.Join(", ", unknown.Select(u => "--" + u))}");
    }

    /// <summary>The options as they were given, for passing on to a child process.</summary>
    public IEnumerable<string> Raw => _values.SelectMany(kv => new[] { "--" + kv.Key, kv.Value });

    T Get<T>(string name, T fallback, Func<string, T> parse)
    {
        _read.Add(name);
        return _values.TryGetValue(name, out var text) ? parse(text) : fallback;
    }
}
