using System.Diagnostics;
using System.Globalization;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Runs;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Lora;

namespace Runtime.Bench;

/// <summary>What the training benchmarks share: the repository's files, a scratch folder, models made by `rt init`, run
/// specs, and a run followed to its end with the time each step's progress arrived.</summary>
internal static class BenchRuns
{
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Runtime.sln above {AppContext.BaseDirectory}");
    }

    public static string Tokenizer()
    {
        var path = Path.Combine(RepositoryRoot(), ".cache", "llama3-tokenizer", "package", "models", "tokenizer.json");
        return File.Exists(path) ? path : throw new InvalidOperationException($"{path} is missing: run .ci/fetch-tokenizer.sh");
    }

    public static string ScratchFolder(string name)
    {
        var path = Path.Combine(Path.GetTempPath(), $"rt-bench-{name}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>`rt init --preset <paramref name="preset"/> --seed 1` with the real tokenizer.</summary>
    public static string InitModel(string preset, string folder)
    {
        int exit = Cli.RtCommand.Run(["init", "--preset", preset, "--out", folder, "--seed", "1", "--tokenizer", Tokenizer()]);
        return exit == 0 ? folder : throw new InvalidOperationException($"rt init --preset {preset} exited {exit}");
    }

    /// <summary>A LoRA spec in the quickstart's shape (fp32, r 8 on every projection, no dropout, log every 10 steps,
    /// TensorBoard on) with one checkpoint, after the last step.</summary>
    public static string SpecText(string name, string model, string data, string output, int steps, int microBatch, int gradAccum,
        int maxSeqLength = 256, int pipeline = 1, int data_ = 1) => string.Create(CultureInfo.InvariantCulture, $$"""
        run {
          name = "{{name}}"
          model = "{{model}}"
          method = lora
          lora { r = 8, alpha = 16, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
          data { path = "{{data}}", max-seq-length = {{maxSeqLength}}, packing = off }
          train { micro-batch-size = {{microBatch}}, grad-accum = {{gradAccum}}, epochs = 100, max-steps = {{steps}}, lr = 1e-3,
                  schedule = cosine, warmup-ratio = 0.03, weight-decay = 0.0, max-grad-norm = 1.0, precision = fp32,
                  grad-checkpointing = off, seed = 42 }
          parallel { data = {{data_}}, pipeline = {{pipeline}}, tensor = 1, schedule = 1f1b }
          checkpoint { every-steps = {{steps}}, keep = 1 }
          log { every-steps = 10, tensorboard = on }
          output = "{{output}}"
        }
        """);

    public static RunSpec Spec(string text, string folder) => RunSpecParser.Parse(text, "bench.conf", folder);

    /// <summary>A run followed to its end: when each step's progress arrived (Stopwatch ticks) and what it said.</summary>
    public sealed record TimedRun(RunStatus Status, IReadOnlyList<(long Ticks, StepProgress Step)> Steps, IReadOnlyList<StepDetails> Details)
    {
        /// <summary>Seconds from step <paramref name="from"/>'s progress to step <paramref name="to"/>'s: everything between, steps and gaps.</summary>
        public double Seconds(long from, long to) =>
            (double)(Steps.Single(s => s.Step.Step == to).Ticks - Steps.Single(s => s.Step.Step == from).Ticks) / Stopwatch.Frequency;

        public double MedianStepSeconds(long after) => Median(Steps.Where(s => s.Step.Step > after).Select(s => s.Step.StepSeconds));

        public long LabelledTokens(long after) => Steps.Where(s => s.Step.Step > after).Sum(s => s.Step.LabelledTokens);
    }

    public static async Task<TimedRun> Follow(RunClient client, RunSpec spec, string runId)
    {
        var steps = new List<(long, StepProgress)>();
        var details = new List<StepDetails>();
        await client.SubmitAsync(spec, runId);
        var status = await client.WaitAsync(runId, p =>
        {
            long now = Stopwatch.GetTimestamp();
            if (p is StepProgress s) steps.Add((now, s));
            else if (p is StepDetails d) details.Add(d);
        });
        if (status.Phase != RunPhase.Completed) throw new InvalidOperationException($"run {runId} ended {status.Phase}: {status.Reason}");
        var missing = Enumerable.Range(1, (int)status.LastStep).Except(steps.Select(s => (int)s.Item2.Step)).ToList();
        if (missing.Count > 0) throw new InvalidOperationException($"run {runId}: no progress seen for steps {string.Join(", ", missing)}");
        return new TimedRun(status, steps, details);
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return double.NaN;
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>max |a - b| / max |a| over every adapter tensor.</summary>
    public static double AdapterDifference(IReadOnlyDictionary<string, float[]> a, string adapterFolder)
    {
        using var adapter = PeftAdapter.Load(adapterFolder);
        double worst = 0;
        foreach (var (name, expected) in a)
        {
            var actual = adapter.Tensors[name].to(TorchSharp.torch.ScalarType.Float32).contiguous().data<float>().ToArray();
            double scale = Math.Max(1e-12, expected.Max(v => Math.Abs(v)));
            for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / scale);
        }
        return worst;
    }
}
