using System.Text.Json;
using System.Text.Json.Serialization;

namespace Runtime.Cluster.RunSpecs;

/// <summary>A spec in a JSON message or event is its canonical HOCON text (<see cref="RunSpecHocon"/>), the form a person reads.</summary>
public sealed class RunSpecJsonConverter : JsonConverter<RunSpec>
{
    public override RunSpec Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        RunSpecParser.ParseCanonical(reader.GetString() ?? throw new JsonException("a run spec must be a string of HOCON"));

    public override void Write(Utf8JsonWriter writer, RunSpec value, JsonSerializerOptions options) =>
        writer.WriteStringValue(RunSpecHocon.Write(value));
}
