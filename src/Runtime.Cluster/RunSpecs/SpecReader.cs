using System.Globalization;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// Reads typed values from a merged run config, collecting one <see cref="SpecProblem"/> per bad key instead of
/// stopping at the first, so a spec's author sees everything wrong at once. Values that fail come back as
/// <c>default</c>; the caller throws when <see cref="Problems"/> is not empty.
/// </summary>
internal sealed class SpecReader(Config config)
{
    readonly List<SpecProblem> _problems = [];

    public IReadOnlyList<SpecProblem> Problems => _problems;

    public void Add(string key, string message) => _problems.Add(new SpecProblem(key, message));

    /// <summary>The text of a single value; null when it is null (a required key left out) or not a single value.</summary>
    public string? Text(string key)
    {
        var value = config.GetValue(key);
        if (value is null) return null;
        if (value.IsObject()) { Add(key, $"{key} must be a single value, not an object"); return null; }
        if (value.IsArray()) { Add(key, $"{key} must be a single value, not a list"); return null; }
        return value.GetString();
    }

    public string? RequiredText(string key, string what)
    {
        var text = Text(key);
        if (text is null && !IsCompound(key)) Add(key, $"{key} is required ({what})");
        else if (text is not null && text.Trim().Length == 0) { Add(key, $"{key} must not be empty ({what})"); return null; }
        return text;
    }

    public int Int(string key, int min, int max = int.MaxValue)
    {
        var text = Text(key);
        if (text is null) return Missing<int>(key);
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
        {
            Add(key, $"{key} must be a whole number (got \"{text}\")");
            return 0;
        }
        if (value < min || value > max) Add(key, $"{key} must be {Range(min, max)} (got {value})");
        return value;
    }

    public long Long(string key, long min)
    {
        var text = Text(key);
        if (text is null) return Missing<long>(key);
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            Add(key, $"{key} must be a whole number (got \"{text}\")");
            return 0;
        }
        if (value < min) Add(key, $"{key} must be at least {min} (got {value})");
        return value;
    }

    /// <summary>A finite number; <paramref name="check"/> returns the rule it breaks (e.g. "> 0"), or null when fine.</summary>
    public double Double(string key, Func<double, string?> check)
    {
        var text = Text(key);
        if (text is null) return Missing<double>(key);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
        {
            Add(key, $"{key} must be a number (got \"{text}\")");
            return 0;
        }
        if (check(value) is { } rule) Add(key, $"{key} must be {rule} (got {value.ToString(CultureInfo.InvariantCulture)})");
        return value;
    }

    public bool Bool(string key)
    {
        var text = Text(key);
        if (text is null) return Missing<bool>(key);
        switch (text.Trim().ToLowerInvariant())
        {
            case "on" or "true" or "yes": return true;
            case "off" or "false" or "no": return false;
            default:
                Add(key, $"{key} must be on or off (got \"{text}\")");
                return false;
        }
    }

    /// <summary>One of <paramref name="choices"/> (names compared case-insensitively).</summary>
    public T Choice<T>(string key, IReadOnlyDictionary<string, T> choices)
    {
        var text = Text(key);
        if (text is null) return Missing<T>(key);
        foreach (var (name, value) in choices)
            if (string.Equals(name, text.Trim(), StringComparison.OrdinalIgnoreCase))
                return value;
        Add(key, $"{key} must be {string.Join(" | ", choices.Keys)} (got \"{text}\")");
        return default!;
    }

    public IReadOnlyList<string>? List(string key, string example)
    {
        var value = config.GetValue(key);
        // Akka's IsArray() is false for an empty list: a HoconValue holding one empty HoconArray.
        bool empty = value is { Values.Count: > 0 } && value.Values.All(e => e is HoconArray a && a.Count == 0);
        if (value is null || (!value.IsArray() && !empty))
        {
            Add(key, $"{key} must be a list such as {example}");
            return null;
        }
        var items = new List<string>();
        foreach (var item in empty ? [] : value.GetArray())
        {
            if (item.IsObject() || item.IsArray())
            {
                Add(key, $"{key} must be a list of names such as {example}");
                return null;
            }
            items.Add(item.GetString());
        }
        return items;
    }

    bool IsCompound(string key) => config.GetValue(key) is { } v && (v.IsObject() || v.IsArray());

    T Missing<T>(string key)
    {
        // Only reachable when a default was removed by a null in the spec (`lr = null`): the key exists but has no value.
        if (!IsCompound(key)) Add(key, $"{key} must have a value");
        return default!;
    }

    static string Range(int min, int max) => max == int.MaxValue ? $"at least {min}" : $"between {min} and {max}";

    /// <summary>
    /// The keys of <paramref name="spec"/> that <paramref name="known"/> lacks, and objects/values in the wrong place,
    /// as problems naming the full key (<c>run.train.lerning-rate is not a known key</c>).
    /// </summary>
    public static IEnumerable<SpecProblem> UnknownKeys(HoconValue spec, HoconValue known, string path)
    {
        if (!spec.IsObject()) yield break;
        var knownItems = known.GetObject().Items;
        foreach (var (key, value) in spec.GetObject().Items)
        {
            var full = path.Length == 0 ? key : path + "." + key;
            if (!knownItems.TryGetValue(key, out var expected))
                yield return new SpecProblem(full, path.Length == 0
                    ? $"{full} is not a known key (a run spec holds one block: run {{ ... }})"
                    : $"{full} is not a known key");
            else if (expected.IsObject() && !value.IsObject())
                yield return new SpecProblem(full, $"{full} must be an object ({full} {{ ... }})");
            else if (!expected.IsObject() && value.IsObject())
                yield return new SpecProblem(full, $"{full} must be a value, not an object");
            else if (expected.IsObject())
                foreach (var p in UnknownKeys(value, expected, full))
                    yield return p;
        }
    }
}
