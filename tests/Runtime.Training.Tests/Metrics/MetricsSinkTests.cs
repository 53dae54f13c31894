using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Runtime.Training.Metrics;
using Runtime.Training.Tests.Data;

namespace Runtime.Training.Tests.Metrics;

public sealed class MetricsSinkTests : IDisposable
{
    readonly DataTempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    static StepMetrics Metrics(long step) =>
        new(step, Loss: 5.5 - step, GradNorm: 0.25 * step, LearningRate: 1e-4 * step, LabelledTokens: 100 + step,
            TokensPerSecond: 1000.5, Seconds: 0.125, MemoryBytes: 1L << 30);

    [Fact]
    public void TensorBoard_event_file_holds_valid_records_with_the_expected_tags_steps_and_values()
    {
        var folder = _temp.File("tb");
        using (var sink = new TensorBoardMetricsSink(folder))
            for (long step = 1; step <= 3; step++) sink.Write(Metrics(step));

        var file = Assert.Single(Directory.GetFiles(folder, "events.out.tfevents.*"));
        var events = TfEventFile.Read(file);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        var scalars = events.Skip(1).SelectMany(e => e.Values.Select(v => (e.Step, v.Tag, v.Value))).ToList();

        string[] tags = ["train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second",
            "train/labelled_tokens", "train/step_seconds", "system/memory_bytes"];
        Assert.Equal(tags.Order(), scalars.Select(s => s.Tag).Distinct().Order());
        foreach (var tag in tags)
            Assert.Equal([1L, 2, 3], scalars.Where(s => s.Tag == tag).Select(s => s.Step));
        Assert.Equal(3.5f, scalars.Single(s => s.Tag == "train/loss" && s.Step == 2).Value);
        Assert.Equal((float)3e-4, scalars.Single(s => s.Tag == "train/learning_rate" && s.Step == 3).Value);
        Assert.Equal(0.25f, scalars.Single(s => s.Tag == "train/grad_norm" && s.Step == 1).Value);
        Assert.Equal((float)(1L << 30), scalars.Single(s => s.Tag == "system/memory_bytes" && s.Step == 1).Value);
        Assert.All(events.Skip(1), e => Assert.True(Math.Abs(e.WallTime - DateTimeOffset.UtcNow.ToUnixTimeSeconds()) < 3600));
    }

    [Fact]
    public void Json_lines_hold_one_object_per_step_and_survive_a_diverged_loss()
    {
        var path = _temp.File(JsonLinesMetricsSink.DefaultFileName);
        using (var sink = new JsonLinesMetricsSink(path))
        {
            sink.Write(Metrics(1));
            sink.Write(Metrics(2) with { Loss = double.NaN });
        }
        using (var again = new JsonLinesMetricsSink(path)) again.Write(Metrics(3)); // a resumed run appends

        var lines = File.ReadAllLines(path);
        Assert.Equal(3, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        var root = first.RootElement;
        Assert.Equal(1, root.GetProperty("step").GetInt64());
        Assert.Equal(4.5, root.GetProperty("loss").GetDouble());
        Assert.Equal(0.25, root.GetProperty("grad_norm").GetDouble());
        Assert.Equal(1e-4, root.GetProperty("learning_rate").GetDouble());
        Assert.Equal(101, root.GetProperty("labelled_tokens").GetInt64());
        Assert.Equal(1000.5, root.GetProperty("tokens_per_second").GetDouble());
        Assert.Equal(1L << 30, root.GetProperty("memory_bytes").GetInt64());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.Equal("NaN", second.RootElement.GetProperty("loss").GetString());
        using var third = JsonDocument.Parse(lines[2]);
        Assert.Equal(3, third.RootElement.GetProperty("step").GetInt64());
    }
}

/// <summary>
/// A reader for TensorFlow event files written independently of TorchSharp: records of
/// [u64 length][u32 masked CRC-32C of the length][event bytes][u32 masked CRC-32C of the bytes], and just the protobuf
/// fields of Event (wall_time 1, step 2, file_version 3, summary 5) and Summary.Value (tag 1, simple_value 2) we log.
/// </summary>
internal static class TfEventFile
{
    public sealed record Event(double WallTime, long Step, string? FileVersion, List<(string Tag, float Value)> Values);

    public static List<Event> Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        int at = 0;
        while (at < bytes.Length)
        {
            var lengthBytes = bytes.AsSpan(at, 8);
            long length = BinaryPrimitives.ReadInt64LittleEndian(lengthBytes);
            Assert.Equal(MaskedCrc(lengthBytes), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 8, 4)));
            var data = bytes.AsSpan(at + 12, (int)length);
            Assert.Equal(MaskedCrc(data), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + (int)length, 4)));
            events.Add(ParseEvent(data.ToArray()));
            at += 12 + (int)length + 4;
        }
        return events;
    }

    static Event ParseEvent(byte[] data)
    {
        double wallTime = 0;
        long step = 0;
        string? version = null;
        var values = new List<(string, float)>();
        foreach (var (field, wire, value, bytes) in Fields(data))
        {
            if (field == 1 && wire == 1) wallTime = BitConverter.Int64BitsToDouble((long)value);
            else if (field == 2 && wire == 0) step = (long)value;
            else if (field == 3 && wire == 2) version = Encoding.UTF8.GetString(bytes!);
            else if (field == 5 && wire == 2)
                foreach (var (f, w, _, valueBytes) in Fields(bytes!))
                    if (f == 1 && w == 2) values.Add(ParseValue(valueBytes!));
        }
        return new Event(wallTime, step, version, values);
    }

    static (string, float) ParseValue(byte[] data)
    {
        string tag = "";
        float value = float.NaN;
        foreach (var (field, wire, raw, bytes) in Fields(data))
        {
            if (field == 1 && wire == 2) tag = Encoding.UTF8.GetString(bytes!);
            else if (field == 2 && wire == 5) value = BitConverter.Int32BitsToSingle((int)raw);
        }
        return (tag, value);
    }

    static IEnumerable<(int Field, int Wire, ulong Value, byte[]? Bytes)> Fields(byte[] data)
    {
        int at = 0;
        while (at < data.Length)
        {
            ulong key = Varint(data, ref at);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: yield return (field, wire, Varint(data, ref at), null); break;
                case 1: yield return (field, wire, BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(at, 8)), null); at += 8; break;
                case 5: yield return (field, wire, BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(at, 4)), null); at += 4; break;
                case 2:
                    int length = (int)Varint(data, ref at);
                    yield return (field, wire, 0, data.AsSpan(at, length).ToArray());
                    at += length;
                    break;
                default: throw new InvalidDataException($"wire type {wire}");
            }
        }
    }

    static ulong Varint(byte[] data, ref int at)
    {
        ulong result = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = data[at++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return result;
        }
    }

    /// <summary>TensorFlow's masked CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).</summary>
    static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
        }
        crc ^= 0xFFFFFFFF;
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8;
    }
}
