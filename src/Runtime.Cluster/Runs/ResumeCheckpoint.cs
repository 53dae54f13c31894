using Runtime.Cluster.RunSpecs;
using Runtime.Training.Checkpoints;

namespace Runtime.Cluster.Runs;

/// <summary>
/// The checkpoint a submitted run starts from (<see cref="SubmitRun.ResumeFrom"/>): a committed checkpoint folder, its
/// manifest, or "latest" (the newest committed one in the spec's output folder). Checked cheaply at submission (a
/// committed folder, a readable state.json of its step, the run's seed); every worker verifies the files' hashes when
/// it loads its part. Any layout may resume any checkpoint: names and slices are global, and so is the data position.
/// </summary>
public static class ResumeCheckpoint
{
    public const string Key = "resume";
    public const string Latest = "latest";

    /// <summary>The checkpoint to record with the submission, or null with the problems added to <paramref name="problems"/>.</summary>
    public static CommittedCheckpoint? Find(string resumeFrom, RunSpec spec, List<SpecProblem> problems)
    {
        string folder;
        if (resumeFrom == Latest)
        {
            var latest = CheckpointFolders.Latest(spec.Output);
            if (latest is null)
            {
                problems.Add(new SpecProblem(Key, $"{Key}: {spec.Output} (run.output) holds no committed checkpoint to resume from"));
                return null;
            }
            folder = latest;
        }
        else
        {
            var path = Path.GetFullPath(resumeFrom);
            folder = Path.GetFileName(path) == CheckpointFolders.ManifestFile ? Path.GetDirectoryName(path)! : Path.TrimEndingDirectorySeparator(path);
        }

        if (!CheckpointFolders.TryParse(Path.GetFileName(folder), out long step, out var suffix) || suffix != "")
        {
            problems.Add(new SpecProblem(Key, $"{Key}: {folder} is not a committed checkpoint folder (checkpoint-<step>)"));
            return null;
        }
        var manifest = Path.Combine(folder, CheckpointFolders.ManifestFile);
        var statePath = Path.Combine(folder, CheckpointFolders.StateFile);
        if (!File.Exists(manifest) || !File.Exists(statePath))
        {
            problems.Add(new SpecProblem(Key, $"{Key}: {folder} has no {(File.Exists(manifest) ? CheckpointFolders.StateFile : CheckpointFolders.ManifestFile)} (not a committed checkpoint)"));
            return null;
        }
        CheckpointState state;
        try
        {
            state = CheckpointState.Read(statePath);
        }
        catch (Exception e) when (e is CheckpointException or IOException or System.Text.Json.JsonException)
        {
            problems.Add(new SpecProblem(Key, $"{Key}: {e.Message}"));
            return null;
        }
        if (state.Step != step)
        {
            problems.Add(new SpecProblem(Key, $"{Key}: {statePath} is of step {state.Step}, but the folder is checkpoint-{step}"));
            return null;
        }
        if (state.Seed != spec.Train.Seed)
        {
            problems.Add(new SpecProblem("run.train.seed",
                $"run.train.seed = {spec.Train.Seed}, but {folder} was trained with seed {state.Seed} (its data order and dropout follow that seed)"));
            return null;
        }
        return new CommittedCheckpoint(step, manifest, state.DataPosition);
    }
}
