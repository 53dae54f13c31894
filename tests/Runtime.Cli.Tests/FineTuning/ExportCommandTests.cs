using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// `rt export` reads any committed checkpoint, whatever layout of workers wrote it, and refuses anything else with the
/// checkpoint reader's error and exit code 1, writing nothing.
/// </summary>
[Collection(FineTuningCollection.Name)]
public sealed class ExportCommandTests : IClassFixture<ExportCommandTests.OneWorkerCheckpoint>
{
    /// <summary>A tiny model, a LoRA run of two steps and its checkpoint, written by one worker.</summary>
    public sealed class OneWorkerCheckpoint : IDisposable
    {
        public ScratchFolder Dir { get; } = new();
        public string Model { get; }
        public string Checkpoint { get; }

        public OneWorkerCheckpoint()
        {
            Model = TinyRun.Init(Dir["tiny"]);
            var data = TinyRun.WriteChat(Dir["chat.jsonl"], TinyRun.Pairs);
            var lora = TinyRun.Lora(dropout: 0.05);
            using var pipeline = TinyRun.OpenData(data, Model, maxSeqLength: 32, packing: true);
            using var slice = TinyRun.LoadWithLora(Model, lora, seed: 4);
            using var loop = new TrainingLoop(slice, TrainingBatches.From(pipeline), new TrainingLoopOptions
            {
                Layout = new BatchLayout(1, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-2, 2, 0), MaxSteps = 2,
                Seed = 1, OutputFolder = Dir["run"], CheckpointEvery = 2, Model = CheckpointModel.Adapter(lora, Model),
            });
            loop.Run();
            Checkpoint = Path.Combine(Dir["run"], "checkpoint-2");
        }

        public void Dispose() => Dir.Dispose();
    }

    readonly OneWorkerCheckpoint _run;

    public ExportCommandTests(OneWorkerCheckpoint run) => _run = run;

    /// <summary>
    /// The same state as two pipeline stages with a tensor-parallel split would write it: stage "p0" the adapters of
    /// layers 0 and 1, stage "p1" those of layers 2 and 3, except that each holds half of layer 1's and layer 2's
    /// q_proj lora_B (rows split, as column-parallel ranks hold it); each worker its own moments.
    /// </summary>
    string WriteAsTwoWorkers(string output)
    {
        using var reader = CheckpointReader.Open(_run.Checkpoint);
        var committer = new CheckpointCommitter(output, 0);
        var temporary = committer.Begin(reader.Step);
        string[] split = ["model.layers.1.self_attn.q_proj.lora_B.weight", "model.layers.2.self_attn.q_proj.lora_B.weight"];
        var parts = new Dictionary<string, (List<ShardTensor> Trainable, List<ShardTensor> Optimizer)> { ["p0"] = ([], []), ["p1"] = ([], []) };
        using var scope = NewDisposeScope();
        foreach (var name in reader.Names)
        {
            var full = reader.Describe(name).Shape;
            var owner = name.StartsWith("model.layers.0.", StringComparison.Ordinal) || name.StartsWith("model.layers.1.", StringComparison.Ordinal) ? "p0" : "p1";
            if (split.Contains(name))
            {
                long half = full[0] / 2;
                foreach (var (worker, start) in new[] { ("p0", 0L), ("p1", half) })
                {
                    var slice = new TensorSlice(0, start, half);
                    parts[worker].Trainable.Add(new ShardTensor(name, reader.Load(name, slice: slice), new TensorPlacement(full, slice)));
                    foreach (var suffix in new[] { ".exp_avg", ".exp_avg_sq" })
                        parts[worker].Optimizer.Add(new ShardTensor(name + suffix, reader.LoadOptimizer(name + suffix, slice: slice), new TensorPlacement(full, slice)));
                }
                continue;
            }
            parts[owner].Trainable.Add(ShardTensor.Whole(name, reader.Load(name)));
            foreach (var suffix in new[] { ".exp_avg", ".exp_avg_sq" })
                parts[owner].Optimizer.Add(ShardTensor.Whole(name + suffix, reader.LoadOptimizer(name + suffix)));
        }
        var files = parts.SelectMany(p => new CheckpointShardWriter(temporary, p.Key).Write(p.Value.Trainable, p.Value.Optimizer)).ToList();
        files.Add(committer.WriteFile(reader.Step, PeftAdapterConfig.FileName, File.ReadAllBytes(reader.FilePath(PeftAdapterConfig.FileName)!)));
        return committer.Commit(reader.Step, reader.State, files);
    }

    [Fact]
    public void A_checkpoint_written_by_several_workers_exports_the_same_adapter_bytes()
    {
        using var dir = new ScratchFolder();
        var twoWorkers = WriteAsTwoWorkers(dir["two"]);
        Assert.Equal(4, Directory.GetFiles(twoWorkers, "*.safetensors").Length);

        foreach (var (checkpoint, output) in new[] { (_run.Checkpoint, dir["from-one"]), (twoWorkers, dir["from-two"]) })
        {
            var (exit, stdout, stderr) = Rt.Invoke("export", "--checkpoint", checkpoint, "--out", output);
            Assert.True(exit == 0, stderr);
            Assert.Contains("exported step 2 as a lora adapter (56 tensors)", stdout);
        }
        foreach (var file in new[] { PeftAdapter.WeightsFileName, PeftAdapterConfig.FileName })
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir["from-one"], file)), File.ReadAllBytes(Path.Combine(dir["from-two"], file)));
        using var adapter = PeftAdapter.Load(dir["from-two"]);
        Assert.Equal(_run.Model, adapter.BaseModelNameOrPath);
    }

    [Fact]
    public void Temporary_corrupt_incomplete_or_undescribed_checkpoints_are_refused_with_exit_1()
    {
        using var dir = new ScratchFolder();
        string Copy(string name)
        {
            var target = Directory.CreateDirectory(dir[name]).FullName;
            foreach (var file in Directory.GetFiles(_run.Checkpoint)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
            return target;
        }
        void Refused(string checkpoint, string message)
        {
            var output = dir["out-" + Path.GetFileName(checkpoint)];
            var (exit, _, stderr) = Rt.Invoke("export", "--checkpoint", checkpoint, "--out", output);
            Assert.Equal(1, exit);
            Assert.StartsWith("error: ", stderr);
            Assert.Contains(message, stderr);
            Assert.False(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(), "a refused export wrote files");
        }

        Refused(Copy("checkpoint-2.tmp"), "a temporary checkpoint folder: the save of step 2 was never committed");

        var corrupt = Copy("corrupt/checkpoint-2");
        var shard = Path.Combine(corrupt, "trainable.0.safetensors");
        var bytes = File.ReadAllBytes(shard);
        bytes[^3] ^= 0x40;
        File.WriteAllBytes(shard, bytes);
        Refused(corrupt, "trainable.0.safetensors: SHA-256");

        var truncated = Copy("truncated/checkpoint-2");
        File.WriteAllBytes(Path.Combine(truncated, "optimizer.0.safetensors"), bytes[..100]);
        Refused(truncated, "optimizer.0.safetensors: 100 bytes, the manifest says");

        var noManifest = Copy("no-manifest/checkpoint-2");
        File.Delete(Path.Combine(noManifest, "manifest.json"));
        Refused(noManifest, "manifest.json: missing: the checkpoint is incomplete");

        // A checkpoint from a run that did not say what it trains has nothing to be exported as.
        var undescribed = Copy("undescribed/checkpoint-2");
        File.WriteAllBytes(Path.Combine(undescribed, "state.json"), (CheckpointState.Read(Path.Combine(_run.Checkpoint, "state.json")) with { Model = null }).ToJson());
        var manifest = CheckpointManifest.Read(Path.Combine(undescribed, "manifest.json"));
        var files = manifest.Files.Select(f => f.Name == "state.json" ? CheckpointFile.Of(Path.Combine(undescribed, "state.json")) : f).ToList();
        File.WriteAllBytes(Path.Combine(undescribed, "manifest.json"), new CheckpointManifest(manifest.Step, files).ToJson());
        Refused(undescribed, "has no \"model\" section");

        // An output folder with something in it is not overwritten.
        Directory.CreateDirectory(dir["busy"]);
        File.WriteAllText(Path.Combine(dir["busy"], "keep.txt"), "mine");
        var busy = Rt.Invoke("export", "--checkpoint", _run.Checkpoint, "--out", dir["busy"]);
        Assert.Equal(1, busy.Exit);
        Assert.Contains("exists and is not empty", busy.Err);
        Assert.Equal(["keep.txt"], Directory.GetFiles(dir["busy"]).Select(Path.GetFileName));
    }
}
