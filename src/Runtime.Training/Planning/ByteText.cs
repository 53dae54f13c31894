using System.Globalization;

namespace Runtime.Training.Planning;

/// <summary>Bytes for people, in decimal units as `rt plan` prints them (1 GB = 10^9 bytes).</summary>
public static class ByteText
{
    /// <summary>"2.35 GB", "812.4 MB", "96.0 kB", "512 B": three significant figures or so, in the largest unit under the value.</summary>
    public static string Format(long bytes)
    {
        double b = bytes, magnitude = Math.Abs(b);
        return magnitude >= 1e9 ? N(b / 1e9, "0.00") + " GB"
            : magnitude >= 1e6 ? N(b / 1e6, "0.0") + " MB"
            : magnitude >= 1e3 ? N(b / 1e3, "0.0") + " kB"
            : bytes.ToString(CultureInfo.InvariantCulture) + " B";
    }

    /// <summary>The value in MB (10^6 bytes), with two decimals under 10 MB and one above, without the unit.</summary>
    public static string Megabytes(long bytes) => N(bytes / 1e6, Math.Abs(bytes) < 10_000_000 ? "0.00" : "0.0");

    static string N(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
}
