using System.Globalization;
using Akka.Configuration;

namespace Runtime.Cluster.Configuration;

/// <summary>
/// Typed reads of settings that name the key when a value is missing or malformed (Akka's own getters return 0 for a
/// missing key and throw a bare FormatException for a bad one).
/// </summary>
internal static class ConfigValues
{
    public static string String(Config config, string path)
    {
        var value = Scalar(config, path);
        return value ?? throw new HoconException($"{path} is not set");
    }

    public static int Int(Config config, string path, int min = int.MinValue)
    {
        var text = String(config, path);
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
            throw new HoconException($"{path} must be an integer (got \"{text}\")");
        if (value < min) throw new HoconException($"{path} must be at least {min} (got {value})");
        return value;
    }

    /// <summary>A size in bytes: a number, or HOCON's units (512MiB, 80GiB, 24GB).</summary>
    public static long ByteSize(Config config, string path, long min = 0)
    {
        var text = String(config, path);
        long? value;
        try
        {
            value = config.GetByteSize(path);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            value = null;
        }
        if (value is null) throw new HoconException($"{path} must be a size such as 80GiB or 24GB, or a number of bytes (got \"{text}\")");
        if (value < min) throw new HoconException($"{path} must be at least {min} bytes (got \"{text}\")");
        return value.Value;
    }

    /// <summary>A duration (HOCON units: ms, s, m, h, d), or null for "off".</summary>
    public static TimeSpan? DurationOrOff(Config config, string path)
    {
        var text = String(config, path);
        if (text is "off" or "none") return null;
        try
        {
            var value = config.GetTimeSpan(path, allowInfinite: false);
            if (value <= TimeSpan.Zero) throw new HoconException($"{path} must be a positive duration or off (got \"{text}\")");
            return value;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            throw new HoconException($"{path} must be a duration such as 30s or 2m, or off (got \"{text}\")");
        }
    }

    /// <summary>The value at <paramref name="path"/> as text; null when absent or null; throws when it is an object or list.</summary>
    public static string? Scalar(Config config, string path)
    {
        if (!config.HasPath(path)) return null;
        var value = config.GetValue(path);
        if (value is null) return null;
        if (value.IsObject()) throw new HoconException($"{path} must be a single value, not an object");
        if (value.IsArray()) throw new HoconException($"{path} must be a single value, not a list");
        return value.GetString();
    }
}
