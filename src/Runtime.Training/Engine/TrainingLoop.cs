using System.Diagnostics;
using Runtime.Model.Llama;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Metrics;
using static TorchSharp.torch;

namespace Runtime.Training.Engine;

/// <summary>
/// Training on one worker holding the whole model: the yardstick for benchmarks and the engine of tests. The cluster
/// runtime drives <see cref="StageEngine"/> and <see cref="OptimizerStep"/> itself across stages and replicas; this loop
/// runs the same pieces in the same order for one worker, so the two cannot drift apart.
/// <para>
/// A step: the step's examples from the global position (one number, the data state), its labelled-token count (known
/// before any forward) as the loss normaliser, then for each micro-batch collate, forward, backward, and fold the
/// gradients into the fp32 masters; then clip, AdamW with the schedule, metrics, and a checkpoint when due. Resuming
/// from a checkpoint restores parameters, optimizer moments, step and data position; the randomness is counter-based
/// (seed, step, micro-batch), so the resumed run continues bitwise as if it had never stopped.
/// </para>
/// The loop does not own the model, the data or the metrics sinks.
/// </summary>
public sealed class TrainingLoop : IDisposable
{
    const string Worker = "0";

    readonly TrainingBatches _data;
    readonly TrainingLoopOptions _options;
    readonly CheckpointCommitter? _committer;

    public TrainingLoop(LlamaSlice model, TrainingBatches data, TrainingLoopOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!model.Spec.IsWhole(model.Config))
            throw new ArgumentException($"the single-worker loop trains the whole model; got a slice of {model.Spec}");
        _data = data;
        _options = options;
        if (options.OutputFolder is not null) _committer = new CheckpointCommitter(options.OutputFolder, options.KeepLast);

        Engine = new StageEngine(model, options.Recompute);
        Optimizer = new OptimizerStep(Engine.TrainableParameters, options.Schedule, options.Optimizer);
        try
        {
            if (options.ResumeFrom is not null) Resume(options.ResumeFrom);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public StageEngine Engine { get; }

    public OptimizerStep Optimizer { get; }

    /// <summary>Optimizer steps done (including those before a resume).</summary>
    public long CompletedSteps { get; private set; }

    /// <summary>The global data position: examples consumed so far.</summary>
    public long DataPosition { get; private set; }

    /// <summary>Runs steps until <see cref="TrainingLoopOptions.MaxSteps"/> are complete; returns this call's steps.</summary>
    public IReadOnlyList<StepRecord> Run()
    {
        var records = new List<StepRecord>();
        while (CompletedSteps < _options.MaxSteps)
        {
            records.Add(RunStep());
            if (_options.CheckpointEvery > 0 && CompletedSteps % _options.CheckpointEvery == 0) SaveCheckpoint();
        }
        return records;
    }

    /// <summary>One optimizer step over the next global batch.</summary>
    public StepRecord RunStep()
    {
        var clock = Stopwatch.StartNew();
        long step = CompletedSteps;
        var plan = _data.StepAt(DataPosition, _options.Layout);
        long stepTokens = _data.LabelledTokens(plan);
        if (stepTokens == 0)
            throw new InvalidOperationException($"step {step} (positions {plan.StartPosition}..{plan.EndPosition - 1}) has no labelled tokens");

        using var meter = _options.MeasureMemory && NativeHeap.IsAvailable
            ? new ActivationMeter(() => MemoryAccounting.GradientBytes(Engine, Optimizer), _options.WatchActivationPeak)
            : null;
        var (lossSum, counted, inputTokens) = RunMicroBatches(plan, step, stepTokens, meter);
        if (counted != stepTokens)
            throw new InvalidOperationException(
                $"step {step}: the micro-batches held {counted} labelled tokens, the data pipeline announced {stepTokens}");
        // After the last backward and before the update: every gradient exists, in its fp32 home.
        var memory = !_options.MeasureMemory ? null : MemoryAccounting.Measure(Engine, Optimizer, meter?.Saved ?? -1, meter?.Peak);

        var update = Optimizer.Step();
        CompletedSteps = update.Step;
        DataPosition = plan.EndPosition;
        clock.Stop();

        var record = new StepRecord(CompletedSteps, lossSum / stepTokens, update.GradNorm, update.LearningRate, stepTokens, inputTokens,
            clock.Elapsed, memory);
        var metrics = new StepMetrics(record.Step, record.Loss, record.GradNorm, record.LearningRate, record.LabelledTokens,
            inputTokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9), clock.Elapsed.TotalSeconds, Environment.WorkingSet, memory);
        foreach (var sink in _options.Metrics) sink.Write(metrics);
        return record;
    }

    /// <summary>Forward and backward of this worker's micro-batches of the step, gradients folded into the fp32 masters.</summary>
    (double LossSum, long Labelled, long InputTokens) RunMicroBatches(StepPlan plan, long step, long stepTokens, ActivationMeter? meter)
    {
        double lossSum = 0;
        long counted = 0, inputTokens = 0;
        Engine.BackwardPartCompleted = meter is null ? null : meter.PartCompleted;
        try
        {
            foreach (var microBatch in _data.ReplicaMicroBatches(plan, 0))
            {
                using (microBatch)
                {
                    meter?.BeforeForward();
                    var result = Engine.Forward(microBatch.Index, microBatch.InputIds, microBatch.Positions, microBatch.SegmentIds,
                        microBatch.Labels, new StepRandomness(_options.Seed, step, microBatch.Index), 1.0 / stepTokens);
                    meter?.AfterForward();
                    Engine.Backward(microBatch.Index);
                    meter?.AfterBackward();
                    Optimizer.AccumulateGradients();
                    lossSum += result.LossSum;
                    counted += result.LabelledTokens;
                    inputTokens += microBatch.InputIds.numel();
                }
            }
        }
        finally
        {
            Engine.BackwardPartCompleted = null;
        }
        return (lossSum, counted, inputTokens);
    }

    /// <summary>Writes and commits a checkpoint of the current state; returns its folder.</summary>
    public string SaveCheckpoint()
    {
        if (_committer is null) throw new InvalidOperationException("no output folder to save checkpoints in");
        var temporary = _committer.Begin(CompletedSteps);
        var files = WorkerCheckpoint.Write(temporary, Worker, Optimizer).ToList();
        if (_options.Model is { } model)
            foreach (var (name, bytes) in model.Files())
                files.Add(_committer.WriteFile(CompletedSteps, name, bytes));
        return _committer.Commit(CompletedSteps, State(), files);
    }

    CheckpointState State()
    {
        var layout = _options.Layout;
        return new CheckpointState
        {
            Step = CompletedSteps,
            DataPosition = DataPosition,
            Seed = _options.Seed,
            SamplerSeed = _data.Sampler.Options.Seed,
            Schedule = ScheduleState.Of(_options.Schedule),
            Layout = new TrainingLayout(1, 1, layout.DataParallel, layout.MicroBatchSize, layout.GradientAccumulation),
            RunSpecSha256 = _options.RunSpecSha256,
            Model = _options.Model?.State,
        };
    }

    void Resume(string folder)
    {
        using var reader = CheckpointReader.Open(folder);
        var state = reader.State;
        if (state.Seed != _options.Seed)
            throw new CheckpointException($"{reader.Location}: written with seed {state.Seed}; this run has seed {_options.Seed}");
        if (state.SamplerSeed is { } samplerSeed && samplerSeed != _data.Sampler.Options.Seed)
            throw new CheckpointException(
                $"{reader.Location}: its data order used sampler seed {samplerSeed}; this run's sampler has {_data.Sampler.Options.Seed}");
        if (state.RunSpecSha256 is { } written && _options.RunSpecSha256 is { } current && written != current)
            throw new CheckpointException($"{reader.Location}: written by run spec {written}; this run's spec is {current}");

        if (state.Model is { } writtenModel && _options.Model is { } currentModel && writtenModel.Method != currentModel.Method)
            throw new CheckpointException(
                $"{reader.Location}: written by a {CheckpointModelState.MethodName(writtenModel.Method)} run; this run is {CheckpointModelState.MethodName(currentModel.Method)}");

        Engine.DiscardAll();
        WorkerCheckpoint.Load(reader, Optimizer);
        CompletedSteps = state.Step;
        DataPosition = state.DataPosition;
    }

    public void Dispose()
    {
        Engine.Dispose();
        Optimizer.Dispose();
    }
}
