using Akka.Actor;
using Akka.Event;
using Runtime.Cluster.Runs;
using Runtime.Cluster.Sharding;
using Runtime.Cluster.Workers;
using Runtime.Training.Checkpoints;

namespace Runtime.Cluster.Driving;

// The driver's checkpoint flow and its end: shards from replica 0's workers, the commit, the coordinator's record,
// retention; then the export and the completion (see RunDriver.cs for the rest).
public sealed partial class RunDriver
{
    // ---- 4. Checkpoints ------------------------------------------------------------------------------------------

    void BeginCheckpoint(long step)
    {
        var plan = Plan;
        _checkpointStep = step;
        _shardFiles.Clear();
        _shardsWritten.Clear();
        string? temporary;
        try
        {
            temporary = RunOutputs.BeginCheckpoint(plan.Spec.Output, step);
        }
        catch (Exception e)
        {
            FailRun($"checkpoint {step}: {Describe(e)}");
            return;
        }
        Become(Checkpointing);
        if (temporary is null)
        {
            _log.Info("run {0}: checkpoint {1} is already committed on disk (an earlier attempt); adopting it", RunId, step);
            RecordCheckpoint(CheckpointFolders.PathOf(plan.Spec.Output, step));
            return;
        }
        // Replicas hold identical parameters and moments: replica 0 writes them, once.
        foreach (var worker in ShardWriters) Region.Tell(new PrepareCheckpoint(worker, Attempt, step, temporary));
    }

    IEnumerable<WorkerId> ShardWriters => Plan.Workers.Where(w => w.Data == 0);

    void Checkpointing()
    {
        Receive<CheckpointShardWritten>(written =>
        {
            if (written.Attempt != Attempt || written.Step != _checkpointStep || !_shardsWritten.Add(written.Worker)) return;
            _shardFiles.AddRange(written.Files);
            if (_shardsWritten.Count < ShardWriters.Count()) return;
            string folder;
            try
            {
                folder = RunOutputs.CommitCheckpoint(Plan.Spec, CheckpointStateOf(_checkpointStep), _shardFiles);
            }
            catch (Exception e)
            {
                FailRun($"committing checkpoint {_checkpointStep} failed: {Describe(e)}");
                return;
            }
            RecordCheckpoint(folder);
        });
        Common();
    }

    void RecordCheckpoint(string folder)
    {
        long step = _checkpointStep;
        var manifest = Path.Combine(folder, CheckpointFolders.ManifestFile);
        ToCoordinator(new CommitCheckpoint(RunId, Attempt, step, manifest, Plan.PositionOf(step + 1)), $"checkpoint {step}", () =>
        {
            // Only now that the coordinator has it may older checkpoints go.
            try
            {
                RunOutputs.ApplyRetention(Plan.Spec.Output, Plan.Spec.Checkpoint.Keep);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log.Warning("run {0}: removing old checkpoints failed (they stay): {1}", RunId, e.Message);
            }
            _checkpointFolder = folder;
            _progress.Publish(new CheckpointSaved(RunId, Attempt, step, folder));
            if (step == Plan.TotalSteps)
            {
                Become(Finishing);
                Finish();
            }
            else if (_stopRequested is { } reason)
            {
                StopAtCheckpoint(step, reason);
            }
            else
            {
                Become(Training);
                StartStep(step + 1);
            }
        });
    }

    CheckpointState CheckpointStateOf(long step)
    {
        var plan = Plan;
        var spec = plan.Spec;
        return new CheckpointState
        {
            Step = step,
            DataPosition = plan.PositionOf(step + 1),
            Seed = spec.Train.Seed,
            SamplerSeed = plan.Data.Sampler.Options.Seed,
            Schedule = ScheduleState.Of(RunRecipe.Schedule(spec, plan.TotalSteps)),
            Layout = new TrainingLayout(spec.Parallel.Pipeline, spec.Parallel.Tensor, spec.Parallel.Data, spec.Train.MicroBatchSize, spec.Train.GradAccum),
            RunSpecSha256 = RunRecipe.TrainingSha256(spec),
        };
    }

    // ---- 5. The end ----------------------------------------------------------------------------------------------

    void Finish()
    {
        var spec = Plan.Spec;
        var folder = _checkpointFolder ?? throw new InvalidOperationException("no final checkpoint to export");
        Task.Run(() => RunOutputs.Export(spec, folder)).PipeTo(Self, success: f => new Exported(f), failure: e => new ExportFailed(e));
    }

    void Finishing()
    {
        Receive<Exported>(exported =>
        {
            ReleaseWorkers();
            // The coordinator stops this driver as soon as it has recorded the completion (its answer is not awaited).
            _completed = exported;
            ToCoordinator(new CompleteRun(RunId, Attempt, Plan.TotalSteps), "completion");
        });
        Receive<ExportFailed>(f => FailRun($"exporting the result of {_checkpointFolder} failed: {Describe(f.Cause)}"));
        Receive<Terminated>(_ => { }); // released workers stop
        Common();
    }
}
