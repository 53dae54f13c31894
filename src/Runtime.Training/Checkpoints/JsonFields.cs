using System.Text.Json;

namespace Runtime.Training.Checkpoints;

/// <summary>Strict reads of a checkpoint's JSON files: a missing or mistyped field is an error naming the file and the key.</summary>
internal readonly struct JsonFields(JsonElement element, string file, string path = "")
{
    public JsonElement Element => element;

    public static JsonDocument Parse(string file)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(file));
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{file}: not valid JSON ({e.Message})");
        }
    }

    /// <summary>Checks the "format" and "version" every checkpoint JSON file starts with.</summary>
    public JsonFields CheckFormat(string format, int version)
    {
        if (String("format") != format) throw Error("format", $"is not \"{format}\"");
        if (Long("version") != version) throw Error("version", $"is {Long("version")}, not the version {version} this build reads");
        return this;
    }

    public bool Has(string key) => element.TryGetProperty(key, out var value) && value.ValueKind != JsonValueKind.Null;

    public JsonFields Object(string key) => new(Get(key, JsonValueKind.Object, "an object"), file, Where(key));

    public JsonFields? OptionalObject(string key) => Has(key) ? Object(key) : null;

    public string String(string key) => Get(key, JsonValueKind.String, "a string").GetString()!;

    public string? OptionalString(string key) => Has(key) ? String(key) : null;

    public long Long(string key)
    {
        var value = Get(key, JsonValueKind.Number, "an integer");
        return value.TryGetInt64(out var result) ? result : throw Error(key, $"is {value.GetRawText()}, not a 64-bit integer");
    }

    public ulong ULong(string key)
    {
        var value = Get(key, JsonValueKind.Number, "an integer");
        return value.TryGetUInt64(out var result) ? result : throw Error(key, $"is {value.GetRawText()}, not an unsigned 64-bit integer");
    }

    public double Double(string key) => Get(key, JsonValueKind.Number, "a number").GetDouble();

    public IEnumerable<JsonFields> Array(string key)
    {
        var array = Get(key, JsonValueKind.Array, "an array");
        string where = Where(key);
        string name = file;
        return array.EnumerateArray().Select((item, i) => new JsonFields(item, name, $"{where}[{i}]")).ToList();
    }

    public long[] Longs(string key)
    {
        var items = Get(key, JsonValueKind.Array, "an array").EnumerateArray().ToList();
        var result = new long[items.Count];
        for (int i = 0; i < items.Count; i++)
            result[i] = items[i].ValueKind == JsonValueKind.Number && items[i].TryGetInt64(out var v) ? v : throw Error($"{key}[{i}]", "is not an integer");
        return result;
    }

    JsonElement Get(string key, JsonValueKind kind, string what)
    {
        if (element.ValueKind != JsonValueKind.Object) throw new CheckpointException($"{file}: '{path}' is not an object");
        if (!element.TryGetProperty(key, out var value)) throw Error(key, "is missing");
        if (value.ValueKind != kind) throw Error(key, $"must be {what}, not {value.ValueKind}");
        return value;
    }

    string Where(string key) => path.Length == 0 ? key : $"{path}.{key}";

    CheckpointException Error(string key, string problem) => new($"{file}: '{Where(key)}' {problem}");
}
