using Runtime.Cluster.Sharding;
using Runtime.Training.Metrics;
using Runtime.Training.Planning;

namespace Runtime.Cluster.Driving;

/// <summary>
/// Bytes one worker holds by the memory planner's categories (<see cref="MemoryBreakdown"/>): frozen weights (with NF4
/// buffers), trainable weights, gradients, optimizer state (AdamW's moments and fp32 masters) and the activation peak
/// of a step. <see cref="Activations"/> is null where it was not measured.
/// </summary>
public sealed record MemoryByCategory(long Weights, long Trainable, long Gradients, long Optimizer, long? Activations)
{
    /// <summary>The categories' sum (the activations counted only when known).</summary>
    public long Total => Weights + Trainable + Gradients + Optimizer + (Activations ?? 0);

    /// <summary>A step's measured bytes (<see cref="StepMemory"/>: tensors counted, the activation peak from the C allocator).</summary>
    public static MemoryByCategory Measured(StepMemory m) => new(m.Weights, m.Trainable, m.Gradients, m.Optimizer, m.ActivationsPeak);

    /// <summary>A stage's planned bytes (the buffers and the reserve left out: nothing measures them).</summary>
    public static MemoryByCategory Planned(MemoryBreakdown m) => new(m.Weights, m.Trainable, m.Gradients, m.Optimizer, m.Activations);
}

/// <summary>
/// What a worker measured of its memory in a step (<see cref="Workers.TrainStep.MeasureMemory"/>).
/// <see cref="WorkersInProcess"/>: the workers its process held then; the C allocator's reading is the whole process's,
/// so the activation peak is measured only by a worker alone in its process (null until it has been), once: a later
/// reading repeats the peak of the first step that measured it.
/// </summary>
public sealed record WorkerMemoryReading(MemoryByCategory Measured, int WorkersInProcess);

/// <summary>
/// One worker's memory measured in step <see cref="Step"/> beside what the run's memory plan says its stage holds
/// (<see cref="RunSpecs.RunMemoryPlan"/>, Runtime's engine, the categories the plan and the measurement share). Published
/// after the first step of an attempt and after the last step of the run, one per worker.
/// </summary>
public sealed record WorkerMemory(
    string RunId, int Attempt, long Step, WorkerId Worker, MemoryByCategory Measured, MemoryByCategory Planned, int WorkersInProcess) : IRunProgress;
