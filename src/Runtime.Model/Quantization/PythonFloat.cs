using System.Globalization;
using System.Text;

namespace Runtime.Model.Quantization;

/// <summary>
/// Python's <c>repr(float)</c>, which is also how <c>json.dumps</c> writes a float: the shortest digits that read back
/// to the same double, in positional notation when the decimal exponent is in [-4, 16) and as <c>1.5e-05</c>
/// otherwise, always with a '.' or an exponent so it reads back as a float (<c>3.0</c>, not <c>3</c>).
/// </summary>
internal static class PythonFloat
{
    public static string Repr(double value)
    {
        if (double.IsNaN(value)) return "NaN";
        if (double.IsPositiveInfinity(value)) return "Infinity";
        if (double.IsNegativeInfinity(value)) return "-Infinity";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";

        var (digits, pointPosition) = ShortestDigits(Math.Abs(value));
        var text = new StringBuilder(value < 0 ? "-" : "");
        // pointPosition: value = 0.d1d2d3... * 10^pointPosition (CPython's "decpt").
        if (pointPosition > -4 && pointPosition <= 16)
        {
            if (pointPosition <= 0)
                text.Append("0.").Append('0', -pointPosition).Append(digits);
            else if (pointPosition >= digits.Length)
                text.Append(digits).Append('0', pointPosition - digits.Length).Append(".0");
            else
                text.Append(digits, 0, pointPosition).Append('.').Append(digits, pointPosition, digits.Length - pointPosition);
        }
        else
        {
            text.Append(digits[0]);
            if (digits.Length > 1) text.Append('.').Append(digits, 1, digits.Length - 1);
            var exponent = pointPosition - 1;
            text.Append('e').Append(exponent < 0 ? '-' : '+').Append(Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture));
        }
        return text.ToString();
    }

    /// <summary>The significant digits of .NET's shortest round-trip form, and where the decimal point goes.</summary>
    private static (string Digits, int PointPosition) ShortestDigits(double positive)
    {
        var s = positive.ToString("R", CultureInfo.InvariantCulture);
        var exponent = 0;
        var e = s.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(s[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            s = s[..e];
        }
        var dot = s.IndexOf('.');
        var integerPart = dot < 0 ? s : s[..dot];
        var all = dot < 0 ? s : integerPart + s[(dot + 1)..];
        var significant = all.TrimStart('0');
        var leadingZeros = all.Length - significant.Length;
        return (significant.TrimEnd('0'), integerPart.Length - leadingZeros + exponent);
    }
}
