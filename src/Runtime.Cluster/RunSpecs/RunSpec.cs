using Runtime.Training.Optim;
using Runtime.Training.Planning;

namespace Runtime.Cluster.RunSpecs;

/// <summary>
/// A fine-tuning run as its HOCON <c>run { ... }</c> block describes it, every key resolved: defaults filled in,
/// paths absolute. <see cref="RunSpecParser"/> builds one, <see cref="RunSpecValidator"/> checks it against the model,
/// the files and the slots, <see cref="RunSpecHocon.Write"/> gives its canonical text (what the journal stores).
/// </summary>
public sealed record RunSpec(
    string Name,
    string Model,
    FineTuneMethod Method,
    LoraSpec Lora,
    QloraSpec Qlora,
    DataSpec Data,
    TrainSpec Train,
    ParallelSpec Parallel,
    CheckpointSpec Checkpoint,
    LogSpec Log,
    string Output)
{
    /// <summary>Samples one optimizer step consumes: micro-batch-size x grad-accum x data-parallel replicas.</summary>
    public long SamplesPerStep => (long)Train.MicroBatchSize * Train.GradAccum * Parallel.Data;

    /// <summary>How the run is admitted at submission (run.admission).</summary>
    public AdmissionSpec Admission { get; init; } = AdmissionSpec.Default;
}

/// <param name="Force">
/// Start the run even when its memory plan does not fit the cluster's smallest worker slot (run.admission.force): for
/// a plan known to be pessimistic, or a slot whose memory is known to be larger than the node says.
/// </param>
public sealed record AdmissionSpec(bool Force)
{
    public static AdmissionSpec Default { get; } = new(false);
}

/// <param name="Targets">PEFT module names, each one of <see cref="LinearModule.AllNames"/>, in the order given.</param>
public sealed record LoraSpec(int R, double Alpha, double Dropout, IReadOnlyList<string> Targets)
{
    public bool Equals(LoraSpec? other) =>
        other is not null && R == other.R && Alpha.Equals(other.Alpha) && Dropout.Equals(other.Dropout) && Targets.SequenceEqual(other.Targets);

    public override int GetHashCode() => HashCode.Combine(R, Alpha, Dropout, string.Join(',', Targets));
}

/// <param name="QuantType">Only "nf4" (bitsandbytes' NormalFloat4) is supported.</param>
public sealed record QloraSpec(string QuantType, bool DoubleQuant);

/// <param name="Path">Absolute path of the JSONL file.</param>
public sealed record DataSpec(string Path, int MaxSeqLength, bool Packing);

/// <param name="MaxSteps">-1: train <see cref="Epochs"/> epochs; otherwise stop after this many optimizer steps.</param>
/// <param name="MaxGradNorm">0: no clipping.</param>
public sealed record TrainSpec(
    int MicroBatchSize,
    int GradAccum,
    int Epochs,
    long MaxSteps,
    double Lr,
    LrScheduleKind Schedule,
    double WarmupRatio,
    double WeightDecay,
    double MaxGradNorm,
    ComputePrecision Precision,
    bool GradCheckpointing,
    long Seed);

/// <summary>Data-parallel replicas x pipeline stages x tensor-parallel ranks; one worker (and slot) each.</summary>
/// <param name="VocabParallel">
/// With <see cref="Tensor"/> &gt; 1, split the embedding, the LM head and the loss by vocabulary rows as well
/// (Megatron's vocab-parallel layout); otherwise both tables are whole on every tensor-parallel rank. Nothing with
/// tensor = 1.
/// </param>
public sealed record ParallelSpec(int Data, int Pipeline, int Tensor, PipelineSchedule Schedule, bool VocabParallel = false)
{
    public int Workers => Data * Pipeline * Tensor;
}

public sealed record CheckpointSpec(int EverySteps, int Keep);

public sealed record LogSpec(int EverySteps, bool Tensorboard);
