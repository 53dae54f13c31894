using System.Text.Json;
using Runtime.Training.Optim;

namespace Runtime.Training.Checkpoints;

/// <summary>The learning-rate schedule a checkpoint was trained with (its position is the checkpoint's step).</summary>
public sealed record ScheduleState(LrScheduleKind Kind, double BaseLearningRate, long TotalSteps, long WarmupSteps)
{
    public static ScheduleState Of(LrSchedule schedule) =>
        new(schedule.Kind, schedule.BaseLearningRate, schedule.TotalSteps, schedule.WarmupSteps);

    public LrSchedule ToSchedule() => new(Kind, BaseLearningRate, TotalSteps, WarmupSteps);
}

/// <summary>How the run that wrote a checkpoint was laid out (any other layout can load it: names and slices are global).</summary>
public sealed record TrainingLayout(int Pipeline, int Tensor, int Data, int MicroBatchSize, int GradientAccumulation)
{
    public int GlobalBatch => MicroBatchSize * GradientAccumulation * Data;
}

/// <summary>
/// Everything besides tensors that a resume needs, as <c>state.json</c> holds it. <see cref="Step"/> counts completed
/// optimizer steps (AdamW's update count and the schedule's position are the same number). The data state is one global
/// position (<see cref="DataPosition"/>, examples consumed). The randomness is counter-based, so its state is the run
/// <see cref="Seed"/> and the step: step k's micro-batch j draws from (seed, k, j), whatever ran before.
/// </summary>
public sealed record CheckpointState
{
    public const string Format = "runtime-checkpoint-state";
    public const int Version = 1;

    public required long Step { get; init; }

    public required long DataPosition { get; init; }

    public required long Seed { get; init; }

    /// <summary>The sampler's shuffle seed, so a resume can check it reads the same order.</summary>
    public ulong? SamplerSeed { get; init; }

    public ScheduleState? Schedule { get; init; }

    public TrainingLayout? Layout { get; init; }

    /// <summary>SHA-256 of the run specification, so a resume can tell it continues the same run.</summary>
    public string? RunSpecSha256 { get; init; }

    /// <summary>What the run trains and on which base (see <see cref="CheckpointModel"/>); what an export needs.</summary>
    public CheckpointModelState? Model { get; init; }

    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("format", Format);
            json.WriteNumber("version", Version);
            json.WriteNumber("step", Step);
            json.WriteStartObject("data");
            json.WriteNumber("position", DataPosition);
            if (SamplerSeed is { } samplerSeed) json.WriteNumber("sampler_seed", samplerSeed);
            json.WriteEndObject();
            json.WriteStartObject("rng");
            json.WriteString("kind", "counter");
            json.WriteNumber("seed", Seed);
            json.WriteNumber("next_step", Step);
            json.WriteEndObject();
            if (Schedule is { } s)
            {
                json.WriteStartObject("schedule");
                json.WriteString("kind", s.Kind.ToString().ToLowerInvariant());
                json.WriteNumber("base_learning_rate", s.BaseLearningRate);
                json.WriteNumber("total_steps", s.TotalSteps);
                json.WriteNumber("warmup_steps", s.WarmupSteps);
                json.WriteNumber("step", Step);
                json.WriteEndObject();
            }
            if (Layout is { } l)
            {
                json.WriteStartObject("layout");
                json.WriteNumber("pipeline", l.Pipeline);
                json.WriteNumber("tensor", l.Tensor);
                json.WriteNumber("data", l.Data);
                json.WriteNumber("micro_batch_size", l.MicroBatchSize);
                json.WriteNumber("gradient_accumulation", l.GradientAccumulation);
                json.WriteEndObject();
            }
            if (Model is { } m)
            {
                json.WriteStartObject("model");
                json.WriteString("method", CheckpointModelState.MethodName(m.Method));
                if (m.BaseModel is not null) json.WriteString("base_model", m.BaseModel);
                json.WriteEndObject();
            }
            if (RunSpecSha256 is not null) json.WriteString("run_spec_sha256", RunSpecSha256);
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    public static CheckpointState Read(string file)
    {
        using var document = JsonFields.Parse(file);
        var root = new JsonFields(document.RootElement, file).CheckFormat(Format, Version);
        var data = root.Object("data");
        var rng = root.Object("rng");
        var schedule = root.OptionalObject("schedule");
        var layout = root.OptionalObject("layout");
        var model = root.OptionalObject("model");
        return new CheckpointState
        {
            Step = root.Long("step"),
            DataPosition = data.Long("position"),
            SamplerSeed = data.Has("sampler_seed") ? data.ULong("sampler_seed") : null,
            Seed = rng.Long("seed"),
            Schedule = schedule is { } s
                ? new ScheduleState(ParseKind(s.String("kind"), file), s.Double("base_learning_rate"), s.Long("total_steps"), s.Long("warmup_steps"))
                : null,
            Layout = layout is { } l
                ? new TrainingLayout((int)l.Long("pipeline"), (int)l.Long("tensor"), (int)l.Long("data"),
                    (int)l.Long("micro_batch_size"), (int)l.Long("gradient_accumulation"))
                : null,
            RunSpecSha256 = root.OptionalString("run_spec_sha256"),
            Model = model is { } m
                ? new CheckpointModelState(CheckpointModelState.ParseMethod(m.String("method"), file), m.OptionalString("base_model"))
                : null,
        };
    }

    static LrScheduleKind ParseKind(string kind, string file) =>
        Enum.TryParse<LrScheduleKind>(kind, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed)
            ? parsed
            : throw new CheckpointException($"{file}: 'schedule.kind' is \"{kind}\", not one of {string.Join(", ", Enum.GetNames<LrScheduleKind>()).ToLowerInvariant()}");
}
