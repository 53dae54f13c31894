using Runtime.Cluster.DataLoading;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Runs;
using Runtime.Cluster.Sharding;
using Runtime.Cluster.Workers;
using Runtime.Model.Config;
using Runtime.Model.Llama;
using Runtime.Training.Data;
using Runtime.Training.Planning;

namespace Runtime.Cluster.Driving;

/// <summary>
/// One attempt of a run, worked out before any worker starts: the opened data (the driver needs the labelled-token
/// count of each step, the loss normaliser, before the step runs), the number of steps, each stage's layers, every
/// worker, and where training resumes. The steps' data positions follow from the resume position and the global
/// batch: step k starts at <c>StartPosition + (k - FirstStep) x G</c>.
/// </summary>
public sealed class RunPlan : IDisposable
{
    RunPlan(RunSpec spec, SharedTrainingData.Lease data, LlamaConfig model, long totalSteps, IReadOnlyList<LlamaSliceSpec> stages,
        IReadOnlyList<WorkerId> workers, long resumeStep, string? resumeFolder, long startPosition, IReadOnlyList<MemoryByCategory>? plannedMemory)
    {
        PlannedMemory = plannedMemory;
        Spec = spec;
        Lease = data;
        Model = model;
        TotalSteps = totalSteps;
        Stages = stages;
        Workers = workers;
        ResumeStep = resumeStep;
        ResumeFolder = resumeFolder;
        StartPosition = startPosition;
        Layout = RunRecipe.Layout(spec);
    }

    public RunSpec Spec { get; }

    SharedTrainingData.Lease Lease { get; }

    public TrainingData Data => Lease.Data;

    public LlamaConfig Model { get; }

    public BatchLayout Layout { get; }

    public long TotalSteps { get; }

    /// <summary>The slice of each pipeline stage (every tensor-parallel rank of a stage holds the same layers).</summary>
    public IReadOnlyList<LlamaSliceSpec> Stages { get; }

    public IReadOnlyList<WorkerId> Workers { get; }

    /// <summary>Steps already done: training continues at ResumeStep + 1.</summary>
    public long ResumeStep { get; }

    /// <summary>The committed checkpoint folder the workers load, or null for a fresh start.</summary>
    public string? ResumeFolder { get; }

    /// <summary>The global sample position step ResumeStep + 1 starts at.</summary>
    public long StartPosition { get; }

    /// <summary>
    /// What the run's memory plan says a worker of each pipeline stage holds (<see cref="RunMemoryPlan"/>; every
    /// tensor-parallel rank and replica of a stage alike), beside which workers report what they measured; null when
    /// the planner cannot size the run (a forced run it would have refused to plan).
    /// </summary>
    public IReadOnlyList<MemoryByCategory>? PlannedMemory { get; }

    public long PositionOf(long step) => StartPosition + (step - ResumeStep - 1) * Layout.GlobalBatch;

    public StepPlan Step(long step) => Data.StepAt(PositionOf(step), Layout);

    /// <summary>Opens the data and works the attempt out. Blocks (the data may need tokenizing): run it off the actor's thread.</summary>
    public static RunPlan Create(RunDriverContext context)
    {
        var spec = context.Spec;
        var model = LlamaConfig.Load(spec.Model);
        var stages = RunRecipe.Stages(spec, model);
        var workers = WorkerIds.All(context.RunId, spec.Parallel.Data, spec.Parallel.Pipeline, spec.Parallel.Tensor);
        var data = SharedTrainingData.Acquire(spec.Data.Path, spec.Model, RunRecipe.DataOptions(spec));
        try
        {
            long total = RunRecipe.TotalSteps(spec, data.Data);
            var resume = context.ResumeFrom;
            long resumeStep = resume?.Step ?? 0;
            if (resumeStep > total)
                throw new RunSpecException(spec.Name, [new SpecProblem("run.train.max-steps",
                    $"the run resumes after step {resumeStep}, but it has only {total} steps")]);
            string? folder = resume is null ? null : Path.GetDirectoryName(resume.ManifestPath);
            return new RunPlan(spec, data, model, total, stages, workers, resumeStep, folder, resume?.DataPosition ?? 0, Planned(spec, model));
        }
        catch
        {
            data.Dispose();
            throw;
        }
    }

    static IReadOnlyList<MemoryByCategory>? Planned(RunSpec spec, LlamaConfig model)
    {
        try
        {
            // The categories do not depend on the slot (only the budget does).
            return RunMemoryPlan.For(spec, model, SlotKind.Cpu, long.MaxValue / 2).Stages.Select(s => MemoryByCategory.Planned(s.Memory)).ToList();
        }
        catch (PlanningException)
        {
            return null;
        }
    }

    public void Dispose() => Lease.Dispose();
}
