using System.Security.Cryptography;
using System.Text.Json;
using Runtime.Model.IO;
using Runtime.Training.Checkpoints;
using Runtime.Training.Optim;
using Runtime.Training.Tests.Data;
using Runtime.Training.Tests.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Checkpoints;

public sealed class CheckpointFilesTests : IDisposable
{
    readonly DataTempFolder _temp = new();
    readonly Generator _generator = new(42);

    string Output => _temp.Path;

    public void Dispose()
    {
        _generator.Dispose();
        _temp.Dispose();
    }

    Tensor Random(params long[] shape) => randn(shape, generator: _generator).DetachFromDisposeScope();

    static CheckpointState StateOf(long step) => new()
    {
        Step = step, DataPosition = 8 * step, Seed = 1234, SamplerSeed = 99,
        Schedule = new ScheduleState(LrScheduleKind.Cosine, 2e-4, 100, 3),
        Layout = new TrainingLayout(2, 1, 1, 4, 2), RunSpecSha256 = "ab12",
    };

    /// <summary>Commits a checkpoint of one worker holding whole tensors "w" [3, 4] and "b" [5] with their moments.</summary>
    string CommitWhole(CheckpointCommitter committer, long step, Tensor w, Tensor b)
    {
        var temporary = committer.Begin(step);
        using var scope = NewDisposeScope();
        var files = new CheckpointShardWriter(temporary, "0").Write(
            [ShardTensor.Whole("w", w), ShardTensor.Whole("b", b)],
            [ShardTensor.Whole("w.exp_avg", w * 0.5), ShardTensor.Whole("w.exp_avg_sq", w * w),
             ShardTensor.Whole("b.exp_avg", b * 0.5), ShardTensor.Whole("b.exp_avg_sq", b * b)]);
        return committer.Commit(step, StateOf(step), files);
    }

    static void AssertSame(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(MicroModel.Bits(expected), MicroModel.Bits(actual));
    }

    [Fact]
    public void A_committed_checkpoint_has_a_manifest_of_hashes_and_round_trips()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var folder = CommitWhole(new CheckpointCommitter(Output, keepLast: 0), 5, w, b);

        Assert.Equal(Path.Combine(Output, "checkpoint-5"), folder);
        Assert.False(Directory.Exists(folder + ".tmp"));
        Assert.Equal(["manifest.json", "optimizer.0.safetensors", "state.json", "trainable.0.safetensors"], _temp.FileNames(folder));

        // The manifest's hashes and sizes, checked here with the BCL directly.
        using (var manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "manifest.json"))))
        {
            Assert.Equal(5, manifest.RootElement.GetProperty("step").GetInt64());
            var files = manifest.RootElement.GetProperty("files").EnumerateArray().ToList();
            Assert.Equal(["optimizer.0.safetensors", "state.json", "trainable.0.safetensors"], files.Select(f => f.GetProperty("name").GetString()));
            foreach (var f in files)
            {
                var bytes = File.ReadAllBytes(Path.Combine(folder, f.GetProperty("name").GetString()!));
                Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), f.GetProperty("sha256").GetString());
                Assert.Equal(bytes.Length, f.GetProperty("bytes").GetInt64());
            }
        }
        using (var state = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "state.json"))))
        {
            var root = state.RootElement;
            Assert.Equal(5, root.GetProperty("step").GetInt64());
            Assert.Equal(40, root.GetProperty("data").GetProperty("position").GetInt64());
            Assert.Equal(1234, root.GetProperty("rng").GetProperty("seed").GetInt64());
            Assert.Equal("cosine", root.GetProperty("schedule").GetProperty("kind").GetString());
            Assert.Equal(2, root.GetProperty("layout").GetProperty("pipeline").GetInt32());
        }

        using var reader = CheckpointReader.Open(folder);
        Assert.Equal(StateOf(5), reader.State);
        Assert.Equal(["b", "w"], reader.Names.Order());
        Assert.Equal(["b.exp_avg", "b.exp_avg_sq", "w.exp_avg", "w.exp_avg_sq"], reader.OptimizerNames.Order());
        using var scope = NewDisposeScope();
        AssertSame(w, reader.Load("w"));
        AssertSame(b, reader.Load("b"));
        AssertSame(w * w, reader.LoadOptimizer("w.exp_avg_sq"));
        var moments = reader.LoadOptimizerState([("b", null)]);
        Assert.Equal(["b.exp_avg", "b.exp_avg_sq"], moments.Keys.Order());
        AssertSame(b * 0.5, moments["b.exp_avg"]);
        Assert.Equal([3L, 4], reader.Describe("w").Shape);
    }

    [Fact]
    public void A_corrupted_file_is_refused_naming_it()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var folder = CommitWhole(new CheckpointCommitter(Output, 0), 1, w, b);
        var path = Path.Combine(folder, "trainable.0.safetensors");
        var bytes = File.ReadAllBytes(path);
        bytes[^3] ^= 0x10; // a bit of the last tensor's data: same size, other content
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(folder));
        Assert.Contains("trainable.0.safetensors: SHA-256", error.Message);
        Assert.Contains("corrupt", error.Message);
        Assert.DoesNotContain("optimizer.0", error.Message);
    }

    [Fact]
    public void A_truncated_or_missing_file_is_refused_naming_it()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var folder = CommitWhole(new CheckpointCommitter(Output, 0), 1, w, b);
        File.Delete(Path.Combine(folder, "optimizer.0.safetensors"));
        var missing = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(folder));
        Assert.Contains("optimizer.0.safetensors: missing", missing.Message);

        var second = CommitWhole(new CheckpointCommitter(Output, 0), 2, w, b);
        var state = Path.Combine(second, "state.json");
        File.WriteAllBytes(state, File.ReadAllBytes(state)[..^4]);
        var truncated = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(second));
        Assert.Contains("state.json:", truncated.Message);
        Assert.Contains("the manifest says", truncated.Message);
    }

    [Fact]
    public void A_temporary_folder_or_a_folder_without_manifest_is_refused()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var committer = new CheckpointCommitter(Output, 0);
        var temporary = committer.Begin(3);
        new CheckpointShardWriter(temporary, "0").Write([ShardTensor.Whole("w", w)], []);
        var uncommitted = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(temporary));
        Assert.Contains("checkpoint-3.tmp: a temporary checkpoint folder", uncommitted.Message);
        Assert.Contains("never committed", uncommitted.Message);

        var folder = CommitWhole(committer, 4, w, b);
        File.Delete(Path.Combine(folder, "manifest.json"));
        var noManifest = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(folder));
        Assert.Contains(Path.Combine("checkpoint-4", "manifest.json") + ": missing", noManifest.Message);
    }

    [Fact]
    public void Shards_are_written_only_into_temporary_folders_and_a_committed_step_is_never_overwritten()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var committer = new CheckpointCommitter(Output, 0);
        var folder = CommitWhole(committer, 2, w, b);
        Assert.Throws<CheckpointException>(() => new CheckpointShardWriter(folder, "0"));
        var again = Assert.Throws<CheckpointException>(() => committer.Begin(2));
        Assert.Contains("already committed", again.Message);
        Assert.Throws<ArgumentException>(() => new CheckpointShardWriter(committer.Begin(3), "../0"));
    }

    [Fact]
    public void Retention_keeps_the_newest_K_and_deletes_only_after_a_newer_commit()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        var committer = new CheckpointCommitter(Output, keepLast: 2);
        for (int step = 1; step <= 4; step++) CommitWhole(committer, step, w, b);
        Assert.Equal([3L, 4], CheckpointFolders.Committed(Output).Select(c => c.Step));

        // A save of step 5 dies after one worker wrote its shard: nothing committed, nothing deleted.
        var temporary = committer.Begin(5);
        new CheckpointShardWriter(temporary, "0").Write([ShardTensor.Whole("w", w)], []);
        Assert.Equal(Path.Combine(Output, "checkpoint-4"), CheckpointFolders.Latest(Output));
        using (var reader = CheckpointReader.Open(CheckpointFolders.Latest(Output)!))
            Assert.Equal(4, reader.State.Step);

        // A commit that fails (a reported shard is not there) changes nothing either.
        var failed = Assert.Throws<CheckpointException>(() =>
            committer.Commit(5, StateOf(5), [new CheckpointFile("trainable.1.safetensors", "00", 10)]));
        Assert.Contains("'trainable.1.safetensors' was reported but is not there", failed.Message);
        Assert.Equal([3L, 4], CheckpointFolders.Committed(Output).Select(c => c.Step));
        Assert.True(Directory.Exists(Path.Combine(Output, "checkpoint-3")));

        // The retried save commits; only then does checkpoint-3 go.
        CommitWhole(committer, 5, w, b);
        Assert.Equal([4L, 5], CheckpointFolders.Committed(Output).Select(c => c.Step));
        Assert.Equal(["checkpoint-4", "checkpoint-5"], Directory.GetDirectories(Output).Select(Path.GetFileName).Order());
        using (var reader = CheckpointReader.Open(Path.Combine(Output, "checkpoint-4"))) { }
    }

    [Fact]
    public void Slices_from_two_workers_reassemble_into_the_full_tensor_or_any_slice_of_it()
    {
        using var scope = NewDisposeScope();
        var rows = Random(6, 4);   // split along dim 0 (column-parallel style)
        var cols = Random(3, 5);   // split along dim 1 (row-parallel style)
        var committer = new CheckpointCommitter(Output, 0);
        var temporary = committer.Begin(1);
        var files = new List<CheckpointFile>();
        foreach (var (worker, r0, rn, c0, cn) in new[] { ("0", 0L, 2L, 0L, 3L), ("1", 2L, 4L, 3L, 2L) })
        {
            var rowPart = rows.narrow(0, r0, rn);
            var colPart = cols.narrow(1, c0, cn);
            files.AddRange(new CheckpointShardWriter(temporary, worker).Write(
                [new ShardTensor("rows", rowPart, new TensorPlacement([6, 4], new TensorSlice(0, r0, rn))),
                 new ShardTensor("cols", colPart, new TensorPlacement([3, 5], new TensorSlice(1, c0, cn)))],
                [new ShardTensor("rows.exp_avg", rowPart * 2, new TensorPlacement([6, 4], new TensorSlice(0, r0, rn))),
                 new ShardTensor("rows.exp_avg_sq", rowPart * 3, new TensorPlacement([6, 4], new TensorSlice(0, r0, rn)))]));
        }
        using var reader = CheckpointReader.Open(committer.Commit(1, StateOf(1), files));

        Assert.Equal([new CheckpointTensorPiece("trainable.0.safetensors", new TensorSlice(0, 0, 2)),
                      new CheckpointTensorPiece("trainable.1.safetensors", new TensorSlice(0, 2, 4))],
            reader.DescribeTrainable("rows").Pieces.OrderBy(p => p.File));
        AssertSame(rows, reader.Load("rows"));
        AssertSame(cols, reader.Load("cols"));
        // A slice across the two pieces, a slice along the other dimension, and one inside a single piece.
        AssertSame(rows.narrow(0, 1, 3), reader.Load("rows", slice: new TensorSlice(0, 1, 3)));
        AssertSame(rows.narrow(1, 1, 2), reader.Load("rows", slice: new TensorSlice(1, 1, 2)));
        AssertSame(cols.narrow(1, 3, 2), reader.Load("cols", slice: new TensorSlice(1, 3, 2)));
        AssertSame(cols.narrow(0, 2, 1), reader.Load("cols", slice: new TensorSlice(0, 2, 1)));
        Assert.Equal(ScalarType.BFloat16, reader.Load("cols", ScalarType.BFloat16).dtype);
        // Optimizer state for a new layout that owns rows [3, 6).
        var moments = reader.LoadOptimizerState([("rows", new TensorSlice(0, 3, 3))]);
        AssertSame(rows.narrow(0, 3, 3) * 3, moments["rows.exp_avg_sq"]);
        foreach (var t in moments.Values) t.Dispose();
    }

    [Fact]
    public void A_slice_can_be_loaded_from_a_tensor_saved_whole()
    {
        using var w = Random(3, 4);
        using var b = Random(5);
        using var reader = CheckpointReader.Open(CommitWhole(new CheckpointCommitter(Output, 0), 1, w, b));
        using var scope = NewDisposeScope();
        AssertSame(w.narrow(1, 2, 2), reader.Load("w", slice: new TensorSlice(1, 2, 2)));
        AssertSame(w.narrow(0, 1, 1), reader.Load("w", slice: new TensorSlice(0, 1, 1)));
        var outside = Assert.Throws<CheckpointException>(() => reader.Load("w", slice: new TensorSlice(1, 3, 2)));
        Assert.Contains("'w'", outside.Message);
    }

    [Fact]
    public void A_tensor_with_a_missing_slice_is_refused_naming_the_gap()
    {
        using var scope = NewDisposeScope();
        var rows = Random(6, 4);
        var committer = new CheckpointCommitter(Output, 0);
        var temporary = committer.Begin(1);
        // Worker 1 wrote rows [4, 6) but nobody wrote [2, 4).
        var files = new List<CheckpointFile>
        {
            new CheckpointShardWriter(temporary, "0").WriteTrainable(
                [new ShardTensor("rows", rows.narrow(0, 0, 2), new TensorPlacement([6, 4], new TensorSlice(0, 0, 2)))]),
            new CheckpointShardWriter(temporary, "1").WriteTrainable(
                [new ShardTensor("rows", rows.narrow(0, 4, 2), new TensorPlacement([6, 4], new TensorSlice(0, 4, 2)))]),
        };
        var folder = committer.Commit(1, StateOf(1), files);
        var error = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(folder));
        Assert.Contains("trainable tensor 'rows' misses [2, 4) along dimension 0", error.Message);
    }
}
