using System.Globalization;
using System.Text;
using Runtime.Model.Quantization;

namespace Runtime.Model.Lora;

/// <summary>
/// Python's <c>json.dumps(value, indent=2, sort_keys=True)</c> (ensure_ascii on), which is how PEFT writes
/// adapter_config.json, over plain CLR values: null, bool, int, long, double (written as Python's float repr, so 0.0
/// stays "0.0"), string, lists, and string-keyed dictionaries. Keys are sorted by code point as Python sorts them.
/// </summary>
internal static class PythonJson
{
    public static string Dumps(object? value)
    {
        var text = new StringBuilder();
        Write(text, value, 0);
        return text.ToString();
    }

    static void Write(StringBuilder text, object? value, int depth)
    {
        switch (value)
        {
            case null: text.Append("null"); break;
            case bool b: text.Append(b ? "true" : "false"); break;
            case int i: text.Append(i.ToString(CultureInfo.InvariantCulture)); break;
            case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: text.Append(PythonFloat.Repr(d)); break;
            case string s: WriteString(text, s); break;
            case IReadOnlyDictionary<string, object?> map: WriteObject(text, map, depth); break;
            case System.Collections.IEnumerable list: WriteList(text, list.Cast<object?>().ToList(), depth); break;
            default: throw new ArgumentException($"cannot write a {value.GetType().Name} as JSON");
        }
    }

    static void WriteObject(StringBuilder text, IReadOnlyDictionary<string, object?> map, int depth)
    {
        if (map.Count == 0)
        {
            text.Append("{}");
            return;
        }
        text.Append('{');
        var first = true;
        foreach (var (key, value) in map.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            text.Append(first ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
            first = false;
            WriteString(text, key);
            text.Append(": ");
            Write(text, value, depth + 1);
        }
        text.Append('\n').Append(' ', 2 * depth).Append('}');
    }

    static void WriteList(StringBuilder text, List<object?> items, int depth)
    {
        if (items.Count == 0)
        {
            text.Append("[]");
            return;
        }
        text.Append('[');
        for (int i = 0; i < items.Count; i++)
        {
            text.Append(i == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
            Write(text, items[i], depth + 1);
        }
        text.Append('\n').Append(' ', 2 * depth).Append(']');
    }

    /// <summary>json.dumps' escaping with ensure_ascii: short escapes for the usual controls, \uXXXX (UTF-16) for the rest.</summary>
    static void WriteString(StringBuilder text, string s)
    {
        text.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7e) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }
}
