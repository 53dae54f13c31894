using Runtime.Cluster.Driving;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Sharding;
using Runtime.Model.Llama;
using Runtime.Training.Checkpoints;

namespace Runtime.Cluster.Workers;

// The worker protocol: what a run's driver says to its worker entities (through the worker shard region) and what
// they answer. Every command carries the run's attempt; a worker already at a newer attempt ignores it, so a failed
// attempt's messages change nothing. Replies come from the worker's trainer (the child that runs torch), so a driver
// watches the sender of WorkerReady: it stops when the worker or its node is lost.

/// <summary>A command for one worker entity, for one attempt of its run.</summary>
public interface IWorkerCommand : IWorkerMessage, ITrainingProtocol
{
    int Attempt { get; }
}

/// <summary>A worker's answer to its driver.</summary>
public interface IWorkerReply : ITrainingProtocol
{
    WorkerId Worker { get; }
    int Attempt { get; }
}

/// <summary>The layers a worker holds (<see cref="LlamaSliceSpec"/> on the wire).</summary>
public sealed record WorkerSlice(int FirstLayer, int EndLayer, bool HasEmbedding, bool HasHead)
{
    public static WorkerSlice Of(LlamaSliceSpec spec) => new(spec.FirstLayer, spec.EndLayer, spec.HasEmbedding, spec.HasHead);

    public LlamaSliceSpec ToSpec() => new(FirstLayer, EndLayer, HasEmbedding, HasHead);
}

/// <summary>
/// Load the slice from the model's files, build the engine and the optimizer, load the worker's part of
/// <see cref="ResumeCheckpoint"/> (a committed checkpoint folder, any layout) when there is one, and answer
/// <see cref="WorkerReady"/>. A worker at an older attempt first drops everything of that attempt. The data-parallel
/// replica's first worker (stage 0, tensor rank 0) also starts the replica's data loader, which answers the driver
/// with <see cref="DataLoading.LoaderReady"/>.
/// </summary>
/// <param name="TotalSteps">The run's optimizer steps (the learning-rate schedule's length).</param>
public sealed record InitializeWorker(
    WorkerId Worker, int Attempt, RunSpec Spec, WorkerSlice Slice, long TotalSteps, string? ResumeCheckpoint) : IWorkerCommand;

/// <param name="Node">The address of the node hosting the worker (where its tensors go).</param>
public sealed record WorkerReady(WorkerId Worker, int Attempt, string Node, long TrainableParameters, double LoadSeconds) : IWorkerReply;

/// <summary>Where one worker of the attempt lives.</summary>
public sealed record WorkerPlacement(WorkerId Worker, string Node);

/// <summary>Every worker is ready: here is where each one lives (routes for the tensor channels). Answered with <see cref="WorkerConnected"/>.</summary>
public sealed record ConnectWorkers(WorkerId Worker, int Attempt, IReadOnlyList<WorkerPlacement> Placements) : IWorkerCommand;

public sealed record WorkerConnected(WorkerId Worker, int Attempt) : IWorkerReply;

/// <summary>
/// Run optimizer step <see cref="Step"/> (1-based) whole: the pipeline schedule over the replica's micro-batches, the
/// data-parallel gradient all-reduce, the global gradient norm, clipping and AdamW. <see cref="LabelledTokens"/> is the
/// step's labelled-token count over every replica (the loss normaliser). Answered with <see cref="StepDone"/>.
/// <see cref="MeasureMemory"/>: also measure the worker's memory by category in this step (tensors counted at the end
/// of the last backward; the activation peak sampled from the C allocator by a watcher thread, which costs a core
/// while the step runs, and only where the worker is alone in its process: the first such measurement watches it,
/// later ones report that peak again), reported in <see cref="StepDone.Memory"/>.
/// </summary>
public sealed record TrainStep(WorkerId Worker, int Attempt, long Step, long LabelledTokens, bool MeasureMemory = false) : IWorkerCommand;

/// <summary>Seconds a step spent: all of it, in forward/backward compute, blocked waiting for data from the loader, for
/// activations or gradients from other stages, and in the data-parallel all-reduce and the norm reduction.</summary>
public sealed record StepTimings(double Seconds, double ComputeSeconds, double DataWaitSeconds, double PipelineWaitSeconds, double ReduceSeconds);

/// <param name="LossSum">The summed token loss of the replica's micro-batches (last stage; 0 elsewhere).</param>
/// <param name="LabelledTokens">Labels the last stage counted (0 elsewhere).</param>
/// <param name="InputTokens">Token positions stage 0 computed on, padding included (0 elsewhere).</param>
/// <param name="LiveTensors">Tensors the worker's thread holds after the step (flat from step to step unless it leaks).</param>
/// <param name="MemoryBytes">The worker process's working set.</param>
/// <param name="Memory">The worker's memory by category when the step was asked to measure it.</param>
public sealed record StepDone(
    WorkerId Worker, int Attempt, long Step, double LossSum, long LabelledTokens, long InputTokens, double GradNorm, double LearningRate,
    StepTimings Timings, long LiveTensors, long MemoryBytes, WorkerMemoryReading? Memory = null) : IWorkerReply;

/// <summary>The step was cancelled (its attempt was aborted); nothing of it was applied.</summary>
public sealed record StepAborted(WorkerId Worker, int Attempt, long Step, string Reason) : IWorkerReply;

/// <summary>
/// The worker could not load or run a step. <see cref="Retryable"/>: a lost peer (a wait timed out), worth another
/// attempt from the last checkpoint; otherwise the same input would fail the same way (a bad file, a shape error).
/// </summary>
public sealed record WorkerFailed(WorkerId Worker, int Attempt, string Reason, bool Retryable) : IWorkerReply;

/// <summary>Write the worker's shard of checkpoint <see cref="Step"/> into <see cref="Folder"/> (the committer's temporary folder).</summary>
public sealed record PrepareCheckpoint(WorkerId Worker, int Attempt, long Step, string Folder) : IWorkerCommand;

/// <summary>The shard files written (names, SHA-256, sizes), for the commit.</summary>
public sealed record CheckpointShardWritten(WorkerId Worker, int Attempt, long Step, IReadOnlyList<CheckpointFile> Files) : IWorkerReply;

/// <summary>
/// Abort the attempt now: the worker entity cancels its tensor inbox at once, without waiting behind the step its
/// trainer is running, so every blocked wait of the attempt fails and the step is dropped.
/// </summary>
public sealed record AbortAttempt(WorkerId Worker, int Attempt, string Reason) : IWorkerCommand;

/// <summary>The attempt (or the run) is over: the worker stops and its slot is free again.</summary>
public sealed record ReleaseWorker(WorkerId Worker, int Attempt) : IWorkerCommand;
