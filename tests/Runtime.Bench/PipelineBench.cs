using System.Globalization;
using System.Text;
using Runtime.Cli.Finetune;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.Workers;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Tokenization;
using static TorchSharp.torch;

namespace Runtime.Bench;

/// <summary>
/// `pipeline` (issue 4, figure b): what a 2-stage pipeline over two processes buys. Two `rt node` processes with one
/// worker slot and one torch thread each form a cluster; this process joins it as `rt finetune --join` does and runs the
/// same LoRA training twice per round, alternately: one worker (one process, one thread) and two pipeline stages (one
/// per process) with the 1F1B schedule over m micro-batches a step. The model is made for the comparison: its
/// layers hold nearly all of the work (a 256-token vocabulary, pre-tokenized rows), so the two stages are even and
/// the LM head does not weigh on the last one. With equal stages of time t per micro-batch, one worker takes 2mt a
/// step and the pipeline (m + p - 1)t, so the ideal speedup is p·m/(m + p - 1) = 2m/(m + 1). Timed over the steady
/// steps, from step W's progress event to the last one's.
/// </summary>
internal static class PipelineBench
{
    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        int m = options.Int("micro-batches", 8), microBatch = options.Int("micro-batch", 2), seq = options.Int("seq", 64);
        int steps = options.Int("steps", 20), warmup = options.Int("warmup", 3), rounds = options.Int("rounds", 2);
        int hidden = options.Int("hidden", 256), layers = options.Int("layers", 8);
        int processes = options.Int("processes", 2);
        if (processes is not (1 or 2)) throw new ArgumentException("--processes: 1 (both stages in one node, 2 slots) or 2 (one node per stage)");
        options.EnsureAllRead();
        return RunAsync(m, microBatch, seq, steps, warmup, rounds, hidden, layers, processes).GetAwaiter().GetResult();
    }

    static async Task<int> RunAsync(int m, int microBatch, int seq, int steps, int warmup, int rounds, int hidden, int layers, int processes)
    {
        var folder = BenchRuns.ScratchFolder("pipeline");
        try
        {
            var config = new LlamaConfig
            {
                VocabSize = 256, HiddenSize = hidden, IntermediateSize = 4 * hidden, NumHiddenLayers = layers, NumAttentionHeads = hidden / 32,
                NumKeyValueHeads = hidden / 64, HeadDim = 32, MaxPositionEmbeddings = 4096, RopeTheta = 10000, TieWordEmbeddings = false,
                BosTokenId = 1, EosTokenIds = [2], TorchDtype = "float32",
            };
            var model = WriteModel(Path.Combine(folder, "model"), config);
            var data = WriteRows(Path.Combine(folder, "rows.jsonl"), rows: 4 * m * microBatch, seq);

            int seedPort = NodeProcesses.FreePort();
            var nodeConfig = Path.Combine(folder, "node.conf");
            File.WriteAllText(nodeConfig, $$"""
                include "{{Path.Combine(BenchRuns.RepositoryRoot(), "hocon", "node.conf")}}"
                akka.cluster.seed-nodes = ["akka.tcp://runtime@127.0.0.1:{{seedPort}}"]
                akka.loglevel = WARNING
                runtime.worker.torch-threads = 1
                """);
            using var nodes = new NodeProcesses();
            // One process with two slots isolates what crossing processes costs from what two busy cores cost.
            nodes.Start(nodeConfig, seedPort, slots: 3 - processes, Path.Combine(folder, "data"), "worker,coordinator");
            if (processes == 2) nodes.Start(nodeConfig, NodeProcesses.FreePort(), slots: 1, Path.Combine(folder, "data"), "worker");

            string SpecText(string name, int pipeline) => BenchRuns.SpecText(name, model, data, Path.Combine(folder, name), steps, microBatch, m,
                maxSeqLength: seq, pipeline: pipeline);
            var first = BenchRuns.Spec(SpecText("single-0", 1), folder);
            var client = await RuntimeNode.StartAsync(FinetuneNode.Options(first, new FinetuneOptions
            {
                SpecPath = "bench.conf", Join = [$"akka.tcp://runtime@127.0.0.1:{seedPort}"], ConfigFiles = [nodeConfig],
            }));
            double ideal = 2.0 * m / (m + 1);
            Console.WriteLine($"pipeline: {config.ParameterCount:N0} parameters ({layers} layers, hidden {hidden}, vocabulary 256), LoRA r 8 fp32, " +
                              $"m = {m} micro-batches of {microBatch} x {seq} tokens a step, {steps} steps timed over {warmup + 1}..{steps}; " +
                              (processes == 2 ? "two rt node processes, 1 slot" : "one rt node process, 2 slots") + $" and 1 torch thread each; ideal 1F1B speedup 2m/(m+1) = {ideal:F3}");
            var speedups = new List<double>();
            try
            {
                await client.WhenUp.WaitAsync(TimeSpan.FromSeconds(60));
                var runs = RunClient.For(client);
                for (int round = 0; round < rounds; round++)
                {
                    var single = await BenchRuns.Follow(runs, BenchRuns.Spec(SpecText($"single-{round}", 1), folder), $"single-{round}");
                    var piped = await BenchRuns.Follow(runs, BenchRuns.Spec(SpecText($"pipeline-{round}", 2), folder), $"pipeline-{round}");
                    double one = single.Seconds(warmup, steps) / (steps - warmup), two = piped.Seconds(warmup, steps) / (steps - warmup);
                    speedups.Add(one / two);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"round {round + 1}: 1 worker {one:F3} s/step (compute {Compute(single, warmup, 0):F3} s), 2 stages {two:F3} s/step " +
                        $"(compute per stage {Compute(piped, warmup, 0):F3} / {Compute(piped, warmup, 1):F3} s, waiting for the other stage " +
                        $"{Wait(piped, warmup, 0):F3} / {Wait(piped, warmup, 1):F3} s); speedup {one / two:F3} = {one / two / ideal:P1} of the ideal {ideal:F3}"));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  per step (medians): 1 worker: its step {Timing(single, warmup, 0, t => t.Seconds):F3} s, update {Timing(single, warmup, 0, t => t.ReduceSeconds):F3} s, " +
                        $"the driver saw {single.MedianStepSeconds(warmup):F3} s; 2 stages: their steps {Timing(piped, warmup, 0, t => t.Seconds):F3} / " +
                        $"{Timing(piped, warmup, 1, t => t.Seconds):F3} s, update {Timing(piped, warmup, 0, t => t.ReduceSeconds):F3} / " +
                        $"{Timing(piped, warmup, 1, t => t.ReduceSeconds):F3} s, the driver saw {piped.MedianStepSeconds(warmup):F3} s"));
                }
            }
            finally
            {
                await client.LeaveAsync();
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"speedup {string.Join(", ", speedups.Select(s => s.ToString("F3", CultureInfo.InvariantCulture)))} (ideal {ideal:F3})"));
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Median compute seconds per step of pipeline stage <paramref name="stage"/>'s worker.</summary>
    static double Compute(BenchRuns.TimedRun run, long after, int stage) => Timing(run, after, stage, t => t.ComputeSeconds);

    static double Wait(BenchRuns.TimedRun run, long after, int stage) => Timing(run, after, stage, t => t.PipelineWaitSeconds);

    static double Timing(BenchRuns.TimedRun run, long after, int stage, Func<StepTimings, double> part) =>
        BenchRuns.Median(run.Details.Where(d => d.Step > after).SelectMany(d => d.Workers).Where(w => w.Worker.Pipeline == stage).Select(w => part(w.Timings)));

    static string WriteModel(string folder, LlamaConfig config)
    {
        var init = new LlamaInitializer(11);
        var entries = LlamaTensorNames.All(config)
            .Select(t => new TensorEntry(t.Name, ScalarType.Float32, t.Shape, () => init.Create(t.Name, t.Shape)))
            .ToList();
        HfModelWriter.Write(folder, entries);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        // The data pipeline reads the tokenizer from the model folder, even for rows of token ids.
        Llama3Tokenizer.CopyFiles(Path.GetDirectoryName(BenchRuns.Tokenizer())!, folder);
        return folder;
    }

    /// <summary>Rows of exactly <paramref name="length"/> token ids in 3..255 (no padding, no special ids).</summary>
    static string WriteRows(string path, int rows, int length)
    {
        var random = new Random(5);
        var text = new StringBuilder();
        for (int r = 0; r < rows; r++)
            text.Append("{\"input_ids\": [").Append(string.Join(", ", Enumerable.Range(0, length).Select(_ => 3 + random.Next(253)))).Append("]}\n");
        File.WriteAllText(path, text.ToString());
        return path;
    }
}
