using System.Text.Json;

namespace Runtime.Training.Metrics;

/// <summary>
/// One JSON object per step appended to a file (by convention <c>metrics.jsonl</c> in the run's output folder):
/// <c>{"step", "loss", "grad_norm", "learning_rate", "labelled_tokens", "tokens_per_second", "seconds", "memory_bytes",
/// "time"}</c>, and <c>"memory": {"weights_bytes", ...}</c> when the step's memory was measured. Each line is flushed as written, so the file can be tailed and survives a crash up to the last step.
/// A resumed run appends, so a step can appear twice when the run went past its last checkpoint: the later line wins.
/// </summary>
public sealed class JsonLinesMetricsSink : IMetricsSink
{
    public const string DefaultFileName = "metrics.jsonl";

    readonly FileStream _stream;

    public JsonLinesMetricsSink(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        _stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    public string Path { get; }

    public void Write(StepMetrics metrics)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("step", metrics.Step);
            Number(json, "loss", metrics.Loss);
            Number(json, "grad_norm", metrics.GradNorm);
            Number(json, "learning_rate", metrics.LearningRate);
            json.WriteNumber("labelled_tokens", metrics.LabelledTokens);
            Number(json, "tokens_per_second", metrics.TokensPerSecond);
            Number(json, "seconds", metrics.Seconds);
            json.WriteNumber("memory_bytes", metrics.MemoryBytes);
            if (metrics.Memory is { } memory)
            {
                json.WriteStartObject("memory");
                foreach (var (tag, value) in memory.Scalars())
                    json.WriteNumber(tag["memory/".Length..], (long)value);
                json.WriteEndObject();
            }
            json.WriteString("time", DateTimeOffset.UtcNow);
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        _stream.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
        _stream.Flush();
    }

    /// <summary>JSON has no NaN or infinity: a diverged loss is written as a string so the line stays valid.</summary>
    static void Number(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value)) json.WriteNumber(name, value);
        else json.WriteString(name, value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public void Dispose() => _stream.Dispose();
}
