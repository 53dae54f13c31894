using System.Diagnostics;
using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Driving;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.TensorParallel;
using Runtime.Training.Checkpoints;
using Runtime.Training.Engine;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;
using TorchSharp;
using static TorchSharp.torch;
using ShardingWorkerId = Runtime.Cluster.Sharding.WorkerId;

namespace Runtime.Cluster.Workers;

/// <summary>What one step did on one worker; <see cref="Memory"/> when it was asked to measure.</summary>
public sealed record StageStepResult(double LossSum, long LabelledTokens, long InputTokens, double GradNorm, double LearningRate, StepTimings Timings,
    WorkerMemoryReading? Memory = null);

/// <summary>
/// One worker's share of a run, without any actor around it: its model slice (only its own tensors, read from the
/// model's files; LoRA or QLoRA adapters injected, or everything trainable for full fine-tuning), the stage engine, the
/// optimizer, and its collective groups. <see cref="RunStep"/> runs one whole optimizer step on the calling thread:
/// the pipeline schedule over the replica's micro-batches (stage 0 takes token ids from the replica's data loader,
/// later stages take activations from the stage before; the last stage takes labels and computes the loss; gradients
/// go back stage by stage), then the gradient reductions (tensor-parallel partial sums, then the data-parallel
/// all-reduce), the global gradient norm (each parameter counted once: every worker of a replica contributes its own
/// parameters' squared norm, a tensor-parallel rank other than 0 leaving out its copies of replicated ones, and the
/// replicas, holding identical gradients after the all-reduce, compute identical sums), clipping and AdamW.
/// <para>
/// Tensor parallelism: worker (d, p, t) holds tensor-parallel shard t of its stage (<see cref="RunRecipe.WorkerSlice"/>)
/// and reduces inside its layers with the other ranks of (d, p) through a <see cref="CollectiveTensorParallelGroup"/>.
/// Activations are replicated across those ranks after every reduce region, so rank t of stage p exchanges activations
/// and gradients with rank t of the next and previous stages only; every rank of a stage gets the replica's token ids,
/// positions and labels from the loader.
/// </para>
/// Not thread-safe: the worker's trainer drives it from its one (pinned) thread, where every tensor it makes lives.
/// </summary>
public sealed class StageWorker : IDisposable
{
    readonly ShardingWorkerId _id;
    readonly int _attempt;
    readonly RunSpec _spec;
    readonly WorkerChannels _channels;
    readonly LlamaSlice _slice;
    readonly StageEngine _engine;
    readonly OptimizerStep _optimizer;
    readonly ICollectiveGroup _dataParallel;
    readonly ICollectiveGroup _modelParallel;
    readonly CollectiveTensorParallelGroup? _tensorParallel;
    readonly IReadOnlyDictionary<string, TensorParallelPlacement> _placements;
    readonly IReadOnlyList<(string Name, Tensor Parameter)> _partialGradients;
    readonly IReadOnlyList<Tensor> _primaryCopies;
    readonly IReadOnlyList<PipelineOp> _schedule;
    readonly WorkerId? _previousStage;
    readonly WorkerId? _nextStage;

    /// <param name="stage">The layers of the worker's pipeline stage (its tensor-parallel shard follows from its id and the spec).</param>
    public StageWorker(ShardingWorkerId id, int attempt, RunSpec spec, LlamaSliceSpec stage, long totalSteps, string? resumeCheckpoint,
        WorkerChannels channels)
    {
        _id = id;
        _attempt = attempt;
        _spec = spec;
        _channels = channels;
        var p = spec.Parallel;
        if (id.Data >= p.Data || id.Pipeline >= p.Pipeline || id.Tensor >= p.Tensor)
            throw new ArgumentException($"worker {id} is outside the layout data {p.Data} x pipeline {p.Pipeline} x tensor {p.Tensor}");

        WorkerId Channel(int d, int s, int t) => new ShardingWorkerId(id.RunId, d, s, t).ToChannel();
        if (p.Tensor > 1)
            _tensorParallel = new CollectiveTensorParallelGroup(
                channels.Group(GroupKind.TensorParallel, Enumerable.Range(0, p.Tensor).Select(t => Channel(id.Data, id.Pipeline, t)).ToList()),
                attempt);

        var config = LlamaConfig.Load(spec.Model);
        using (var source = new HfModelFolder(spec.Model))
            _slice = LlamaLoader.Load(source, config, RunRecipe.WorkerSlice(spec, stage, id.Tensor), RunRecipe.ModelOptions(spec), _tensorParallel);
        try
        {
            if (RunRecipe.Lora(spec) is { } lora) LoraInjector.Inject(_slice, lora, spec.Train.Seed);
            _placements = TensorParallelPlacements.For(_slice);
            _engine = new StageEngine(_slice, spec.Train.GradCheckpointing);
            _optimizer = new OptimizerStep(_engine.TrainableParameters, RunRecipe.Schedule(spec, totalSteps), RunRecipe.Optimizer(spec));
            // The optimizer's tensors (fp32 masters of bf16 weights) hold the accumulated gradients: reduce and count those.
            _partialGradients = _optimizer.Parameters.Where(x => PlacementOf(x.Name).GradientNeedsAllReduce).ToList();
            _primaryCopies = _optimizer.Parameters.Where(x => PlacementOf(x.Name).IsPrimaryCopy(id.Tensor)).Select(x => x.Parameter).ToList();
            if (resumeCheckpoint is not null)
            {
                using var reader = CheckpointReader.Open(resumeCheckpoint);
                WorkerCheckpoint.Load(reader, _optimizer, CheckpointPlacement);
            }
        }
        catch
        {
            _engine?.Dispose();
            _optimizer?.Dispose();
            _slice.Dispose();
            throw;
        }

        _dataParallel = channels.Group(GroupKind.DataParallel,
            Enumerable.Range(0, p.Data).Select(d => Channel(d, id.Pipeline, id.Tensor)).ToList());
        _modelParallel = channels.Group(GroupKind.ModelParallel,
            (from s in Enumerable.Range(0, p.Pipeline) from t in Enumerable.Range(0, p.Tensor) select Channel(id.Data, s, t)).ToList());
        _schedule = PipelineSchedules.For(p.Schedule, p.Pipeline, id.Pipeline, spec.Train.GradAccum);
        _previousStage = id.Pipeline > 0 ? Channel(id.Data, id.Pipeline - 1, id.Tensor) : null;
        _nextStage = id.Pipeline < p.Pipeline - 1 ? Channel(id.Data, id.Pipeline + 1, id.Tensor) : null;
        Interlocked.Increment(ref s_inProcess);
    }

    static int s_inProcess;
    bool _disposed;

    /// <summary>The activation peak this worker watched (its first memory measurement alone in its process).</summary>
    long? _activationPeak;

    /// <summary>Workers alive in this process (of any run): the C allocator's readings are theirs together.</summary>
    public static int InProcess => Volatile.Read(ref s_inProcess);

    /// <summary>Trainable parameters of this worker's slice.</summary>
    public long TrainableParameters => _optimizer.Parameters.Sum(p => p.Parameter.numel());

    /// <summary>Optimizer steps done (including those of the checkpoint it resumed from).</summary>
    public long CompletedSteps => _optimizer.StepCount;

    /// <summary>The tensors the optimizer updates (fp32), by canonical name: this worker's part of the trainable state.</summary>
    public IReadOnlyList<(string Name, Tensor Parameter)> Parameters => _optimizer.Parameters;

    /// <summary>Where each parameter of the slice sits in the full model (sharded or replicated over the tensor-parallel ranks).</summary>
    public IReadOnlyDictionary<string, TensorParallelPlacement> Placements => _placements;

    /// <summary>
    /// Tensors this worker's thread holds: those made here and still alive, plus those taken from other threads and not
    /// yet freed (the thread's own count, corrected for the tensors that crossed to or from other threads). Between
    /// steps it stays the same unless something leaks.
    /// </summary>
    public long LiveTensors => DisposeScopeManager.Statistics.ThreadTotalLiveCount + _channels.Taken - _channels.Sent;

    /// <param name="measureMemory">Also measure the worker's memory by category (see <see cref="TrainStep.MeasureMemory"/>).</param>
    public StageStepResult RunStep(long step, long stepLabelledTokens, bool measureMemory = false)
    {
        if (stepLabelledTokens < 1) throw new ArgumentOutOfRangeException(nameof(stepLabelledTokens), stepLabelledTokens, $"step {step} has no labelled tokens");
        int workersInProcess = InProcess;
        // Watching the peak costs a core for the whole step, and a step's activations repeat from step to step: the
        // first measurement that can watch does, later ones report the peak it saw.
        using var meter = measureMemory && _activationPeak is null ? ActivationMeterFor(workersInProcess) : null;
        var clock = Stopwatch.StartNew();
        _channels.ResetWaits();
        var p = _spec.Parallel;
        double lossScale = 1.0 / stepLabelledTokens;
        double lossSum = 0;
        long labelled = 0, inputTokens = 0;
        _tensorParallel?.BeginStep(step);

        // The activation peak is one window over the whole schedule (a pipeline interleaves micro-batches), read part
        // by part of each backward less the gradients that existed when the part began.
        meter?.BeforeForward();
        _engine.BackwardPartCompleted = meter is null ? null : meter.PartCompleted;
        try
        {
            using var stepScope = NewDisposeScope();
            foreach (var op in _schedule)
            {
                // Replica d runs the global micro-batches j with j % dp == d, in increasing j.
                int j = op.MicroBatch * p.Data + _id.Data;
                _tensorParallel?.At(j);
                using var opScope = NewDisposeScope();
                if (op.Kind == PipelineOpKind.Forward)
                {
                    var forward = Forward(step, j, lossScale, ref inputTokens);
                    if (_engine.IsLastStage)
                    {
                        lossSum += forward.LossSum;
                        labelled += forward.LabelledTokens;
                    }
                }
                else
                {
                    Backward(step, j, meter);
                }
            }
        }
        finally
        {
            _engine.BackwardPartCompleted = null;
        }
        meter?.AfterBackward();
        _activationPeak ??= meter?.Peak;
        // After the last backward, before the reductions and the update: every gradient exists, in its fp32 home.
        var memory = measureMemory
            ? new WorkerMemoryReading(MemoryByCategory.Measured(MemoryAccounting.Measure(_engine, _optimizer, activationsPeak: _activationPeak)), workersInProcess)
            : null;
        double pipelineSeconds = clock.Elapsed.TotalSeconds;

        var reduceClock = Stopwatch.StartNew();
        ReduceTensorParallelGradients();
        AllReduceGradients(step);
        var update = _optimizer.Step(squared => _modelParallel.AllReduceSum(SquaredNormOfPrimaryCopies(squared), Key(step, 1)));
        double reduceSeconds = reduceClock.Elapsed.TotalSeconds;

        double compute = pipelineSeconds - _channels.DataWaitSeconds - _channels.PipelineWaitSeconds;
        var timings = new StepTimings(clock.Elapsed.TotalSeconds, compute, _channels.DataWaitSeconds, _channels.PipelineWaitSeconds, reduceSeconds);
        return new StageStepResult(lossSum, labelled, inputTokens, update.GradNorm, update.LearningRate, timings, memory);
    }

    /// <summary>
    /// A meter of the activation peak, where it can be read: glibc's allocator, and no other worker in the process
    /// (their tensors would count). Tensors that earlier code left to the finalizer are freed first, so they are not
    /// freed in the middle of the measured step.
    /// </summary>
    ActivationMeter? ActivationMeterFor(int workersInProcess)
    {
        if (workersInProcess != 1 || !NativeHeap.IsAvailable) return null;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return new ActivationMeter(() => MemoryAccounting.GradientBytes(_engine, _optimizer), watchPeak: true);
    }

    StageForward Forward(long step, int j, double lossScale, ref long inputTokens)
    {
        var positions = _channels.Take(Data(step, j, BatchPart.Positions));
        var segments = _spec.Data.Packing ? _channels.Take(Data(step, j, BatchPart.SegmentIds)) : null;
        Tensor input;
        if (_engine.IsFirstStage)
        {
            input = _channels.Take(Data(step, j, BatchPart.InputIds));
            inputTokens += input.numel();
        }
        else
        {
            input = _channels.Take(new TensorTag(_attempt, step, j, TensorKind.Activation, _previousStage!));
            if (input.dtype != _slice.Options.DType) input = input.to(_slice.Options.DType);
        }
        var labels = _engine.IsLastStage ? _channels.Take(Data(step, j, BatchPart.Labels)) : null;
        var randomness = new StepRandomness(_spec.Train.Seed, step - 1, j);
        var result = _engine.Forward(j, input, positions, segments, labels, randomness, lossScale);
        _tensorParallel?.ThrowIfFailed();
        // The output shares storage with what the engine keeps for the backward and nobody changes it in place, so it
        // can be handed over as it is.
        if (result.Output is { } output) _channels.Send(_nextStage!, Tag(step, j, TensorKind.Activation), output);
        return result;
    }

    void Backward(long step, int j, ActivationMeter? meter)
    {
        var gradOutput = _engine.IsLastStage ? null : _channels.Take(new TensorTag(_attempt, step, j, TensorKind.Gradient, _nextStage!));
        var inputGradient = _engine.Backward(j, gradOutput);
        _tensorParallel?.ThrowIfFailed();
        _optimizer.AccumulateGradients();
        meter?.GradientsMoved();
        if (inputGradient is not null) _channels.Send(_previousStage!, Tag(step, j, TensorKind.Gradient), inputGradient);
    }

    /// <summary>
    /// Sums, over the tensor-parallel ranks of this (replica, stage), the gradients that are partial per rank (LoRA A of
    /// column-parallel and LoRA B of row-parallel projections: each rank saw only its own columns), in one flat buffer.
    /// This is <see cref="TensorParallelPlacements.AllReducePartialGradients"/> applied to the optimizer's tensors rather
    /// than the model's: with fp32 masters (bf16 weights) the gradients have already moved to the masters after each
    /// micro-batch. It runs before the data-parallel all-reduce (either order gives the same sums: both are sums, and
    /// the tensor-parallel sum leaves the ranks' gradients bitwise equal, so the data-parallel sums stay equal too).
    /// </summary>
    void ReduceTensorParallelGradients()
    {
        if (_tensorParallel is null || _partialGradients.Count == 0) return;
        _tensorParallel.At(-1);
        ReduceFlat(_partialGradients, _tensorParallel.AllReduceSumInPlace);
        _tensorParallel.ThrowIfFailed();
    }

    /// <summary>
    /// Sums the trainable gradients over the data-parallel replicas of this (stage, rank), all in one flat fp32 buffer
    /// (one collective per step, not one per tensor). Every replica ends with the same bits.
    /// </summary>
    void AllReduceGradients(long step)
    {
        if (_spec.Parallel.Data == 1) return;
        ReduceFlat(_optimizer.Parameters, flat => _dataParallel.AllReduceSumInPlace(flat, Key(step, 0)));
    }

    /// <summary>Packs the gradients of <paramref name="parameters"/> into one buffer (zeros for a missing one), reduces it, unpacks.</summary>
    static void ReduceFlat(IReadOnlyList<(string Name, Tensor Parameter)> parameters, Action<Tensor> reduce)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flat = cat(parameters.Select(x => (x.Parameter.grad ?? zeros_like(x.Parameter)).reshape(-1)).ToList(), 0).contiguous();
        reduce(flat);
        long offset = 0;
        foreach (var (_, parameter) in parameters)
        {
            long n = parameter.numel();
            var reduced = flat.narrow(0, offset, n).view(parameter.shape);
            if (parameter.grad is { } grad) grad.copy_(reduced);
            else parameter.grad = reduced.clone().DetachFromDisposeScope();
            offset += n;
        }
    }

    /// <summary>
    /// This worker's share of the global squared gradient norm: all of its gradients (<paramref name="local"/>), except
    /// on a tensor-parallel rank other than 0, whose copies of replicated tensors rank 0 already counts.
    /// </summary>
    double SquaredNormOfPrimaryCopies(double local) =>
        _tensorParallel is { Rank: > 0 } ? GradientClipper.ComputeLocalSquaredNorm(_primaryCopies) : local;

    TensorParallelPlacement PlacementOf(string name) =>
        _placements.TryGetValue(name, out var placement)
            ? placement
            : throw new InvalidOperationException($"worker {_id}: trainable tensor '{name}' is not a parameter of its slice {_slice.Spec}");

    TensorPlacement CheckpointPlacement(string name)
    {
        var placement = PlacementOf(name);
        return new TensorPlacement(placement.FullShape, placement.Slice);
    }

    /// <summary>Drops whatever an interrupted step left: micro-batches in flight and partial gradients.</summary>
    public void DropStep()
    {
        _engine.DiscardAll();
        _optimizer.ZeroGrad();
    }

    /// <summary>
    /// Writes this worker's checkpoint shard: trainable values and AdamW moments under canonical names, each with the
    /// part of the full tensor it is; replicated tensors only from tensor-parallel rank 0 (every rank holds the same bits).
    /// </summary>
    public IReadOnlyList<CheckpointFile> WriteShard(string temporaryFolder) =>
        WorkerCheckpoint.Write(temporaryFolder, _id.ShardName(), _optimizer, CheckpointPlacement, name => PlacementOf(name).IsPrimaryCopy(_id.Tensor));

    TensorTag Tag(long step, int microBatch, TensorKind kind) => new(_attempt, step, microBatch, kind, _channels.Self);

    TensorTag Data(long step, int microBatch, BatchPart part) => BatchTags.For(_attempt, step, microBatch, part, _id.RunId, _id.Data);

    CollectiveKey Key(long step, long sequence) => new(_attempt, step, sequence);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Interlocked.Decrement(ref s_inProcess);
        _engine.Dispose();
        _optimizer.Dispose();
        _slice.Dispose();
    }
}
