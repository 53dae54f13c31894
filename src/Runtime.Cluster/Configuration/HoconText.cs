using System.Text;
using System.Text.RegularExpressions;

namespace Runtime.Cluster.Configuration;

/// <summary>
/// Text-level passes over a HOCON document before Akka's parser sees it: environment variables, a bracket check
/// that reports the line, and field separators Akka's parser lacks. Both skip quoted strings and comments.
/// </summary>
internal static partial class HoconText
{
    /// <summary>
    /// Replaces <c>${NAME}</c> and <c>${?NAME}</c> whose NAME looks like an environment variable (upper case, digits,
    /// underscores; no dots) with the variable's value as a quoted string; other substitutions are left to the HOCON
    /// parser as config paths. An unset <c>${NAME}</c> is an error. An unset <c>${?NAME}</c> that is the whole value of
    /// its line (<c>key = ${?NAME}</c>) removes that line, so an earlier value of the key stands (HOCON's meaning);
    /// elsewhere it becomes empty.
    /// </summary>
    public static string SubstituteEnvironment(string text, string source, Func<string, string?> environment)
    {
        var output = new StringBuilder(text.Length);
        int lineStartInOutput = 0, line = 1;
        for (int i = 0; i < text.Length;)
        {
            int skipped = SkipStringOrComment(text, i);
            if (skipped > i)
            {
                for (int k = i; k < skipped; k++)
                    if (text[k] == '\n') { line++; lineStartInOutput = output.Length + (k - i) + 1; }
                output.Append(text, i, skipped - i);
                i = skipped;
                continue;
            }
            char c = text[i];
            if (c == '$' && i + 1 < text.Length && text[i + 1] == '{')
            {
                int close = text.IndexOf('}', i + 2);
                var match = close < 0 ? null : EnvironmentName().Match(text, i + 2, close - i - 2);
                if (match is { Success: true })
                {
                    bool optional = match.Groups["optional"].Success;
                    var name = match.Groups["name"].Value;
                    var value = environment(name);
                    if (value is not null)
                        output.Append(Quote(value));
                    else if (!optional)
                        throw new HoconException($"{source}:{line}: environment variable {name} is not set (${{{name}}}; use ${{?{name}}} to make it optional)");
                    else if (IsWholeValue(output, lineStartInOutput, text, close + 1, out int lineEnd))
                    {
                        output.Length = lineStartInOutput; // drop `key = ` already copied
                        i = lineEnd;
                        continue;
                    }
                    i = close + 1;
                    continue;
                }
            }
            if (c == '\n') { line++; lineStartInOutput = output.Length + 1; }
            output.Append(c);
            i++;
        }
        return output.ToString();
    }

    /// <summary>
    /// Checks brackets, throwing with the line of the first one that does not match or is never closed (Akka's parser
    /// accepts an unclosed brace silently), and turns a comma after an object's closing brace into a space where
    /// the comma separates fields (<c>lora { r = 8 }, data { ... }</c>): standard HOCON that Akka's parser rejects.
    /// </summary>
    public static string NormalizeSeparators(string text, string source)
    {
        var chars = text.ToCharArray();
        var open = new Stack<(char Bracket, int Line)>();
        int line = 1;
        char previous = '\0'; // the last character outside strings, comments and whitespace
        for (int i = 0; i < text.Length;)
        {
            int skipped = SkipStringOrComment(text, i);
            if (skipped > i)
            {
                for (int k = i; k < skipped; k++) if (text[k] == '\n') line++;
                if (text[i] == '"') previous = '"';
                i = skipped;
                continue;
            }
            char c = text[i];
            switch (c)
            {
                case '\n': line++; break;
                case '{' or '[': open.Push((c, line)); break;
                case '}' or ']':
                    char expected = c == '}' ? '{' : '[';
                    if (open.Count == 0 || open.Peek().Bracket != expected)
                        throw new HoconException(open.Count == 0
                            ? $"{source}:{line}: '{c}' closes nothing"
                            : $"{source}:{line}: '{c}' does not match the '{open.Peek().Bracket}' opened on line {open.Peek().Line}");
                    open.Pop();
                    break;
                case ',' when previous == '}' && (open.Count == 0 || open.Peek().Bracket == '{'):
                    chars[i] = ' '; // Akka's parser takes a space there; line and column numbers stay true
                    break;
            }
            if (!char.IsWhiteSpace(c)) previous = c;
            i++;
        }
        if (open.Count > 0)
            throw new HoconException($"{source}:{open.Peek().Line}: '{open.Peek().Bracket}' is never closed");
        return new string(chars);
    }

    /// <summary>":line:column" for a parser message that names a character position, else "".</summary>
    public static string Where(string text, string parserMessage)
    {
        var m = Position().Match(parserMessage);
        if (!m.Success || !int.TryParse(m.Groups[1].Value, out int position)) return "";
        position = Math.Clamp(position, 0, text.Length);
        int line = 1, column = 1;
        for (int i = 0; i < position; i++)
        {
            if (text[i] == '\n') { line++; column = 1; }
            else column++;
        }
        return $":{line}:{column}";
    }

    /// <summary>A HOCON quoted string holding <paramref name="value"/> exactly.</summary>
    public static string Quote(string value)
    {
        var b = new StringBuilder(value.Length + 2).Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': b.Append("\\\""); break;
                case '\\': b.Append("\\\\"); break;
                case '\n': b.Append("\\n"); break;
                case '\r': b.Append("\\r"); break;
                case '\t': b.Append("\\t"); break;
                default:
                    if (c < ' ') b.Append("\\u").Append(((int)c).ToString("x4"));
                    else b.Append(c);
                    break;
            }
        }
        return b.Append('"').ToString();
    }

    /// <summary>The index after the quoted string or comment starting at <paramref name="i"/>, or i if none starts there.</summary>
    static int SkipStringOrComment(string text, int i)
    {
        if (string.CompareOrdinal(text, i, "\"\"\"", 0, 3) == 0)
        {
            int end = text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal);
            return end < 0 ? text.Length : end + 3;
        }
        if (text[i] == '"')
        {
            int k = i + 1;
            while (k < text.Length && text[k] != '"' && text[k] != '\n')
                k += text[k] == '\\' ? 2 : 1;
            return Math.Min(k + 1, text.Length);
        }
        if (text[i] == '#' || (text[i] == '/' && i + 1 < text.Length && text[i + 1] == '/'))
        {
            int end = text.IndexOf('\n', i);
            return end < 0 ? text.Length : end;
        }
        return i;
    }

    /// <summary>
    /// True when the output so far on this line is `key =` (or `key :`) and the input after the substitution is only
    /// spaces, a comma or a comment; <paramref name="lineEnd"/> is then the index of the line's newline (or the end).
    /// </summary>
    static bool IsWholeValue(StringBuilder output, int lineStartInOutput, string text, int after, out int lineEnd)
    {
        int newline = text.IndexOf('\n', after);
        lineEnd = newline < 0 ? text.Length : newline;
        var before = output.ToString(lineStartInOutput, output.Length - lineStartInOutput);
        var rest = text[after..lineEnd];
        return KeyAssignment().IsMatch(before) && RestOfLine().IsMatch(rest);
    }

    [GeneratedRegex(@"\G(?<optional>\?)?(?<name>[A-Z_][A-Z0-9_]*)$")]
    private static partial Regex EnvironmentName();

    [GeneratedRegex(@"^\s*[^\s=:{}\[\]]+\s*[=:]\s*$")]
    private static partial Regex KeyAssignment();

    [GeneratedRegex(@"^\s*,?\s*(#.*|//.*)?\r?$")]
    private static partial Regex RestOfLine();

    [GeneratedRegex(@"position (\d+)")]
    private static partial Regex Position();
}
