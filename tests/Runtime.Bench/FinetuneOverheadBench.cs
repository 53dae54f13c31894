using System.Diagnostics;
using Runtime.Cli.Finetune;
using Runtime.Cluster.Configuration;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Hosting;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tokenization;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using TorchSharp;

namespace Runtime.Bench;

/// <summary>
/// `finetune-overhead` (issue 4, figure a): the actor runtime's cost. The same LoRA run (the quickstart's data and
/// shape on a preset made by `rt init`, fp32, the same batches and steps) twice in this process, alternately, for a
/// few rounds: the plain <see cref="TrainingLoop"/> built from the spec the way a worker builds its slice (the
/// yardstick), and `rt finetune`'s in-process node with one worker, submitted and followed with <see cref="RunClient"/>.
/// Both run with the worker's torch thread count. Timed over the steady steps (after the warm-up ones): the loop from
/// the end of step W to the end of step N, the runtime from step W's progress event to step N's, so every gap between
/// steps (the driver's messages, metrics files, the data loader) counts. The runtime's single worker must train
/// bitwise what the loop trains; the adapters are compared as a check that both did the same work.
/// </summary>
internal static class FinetuneOverheadBench
{
    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        var preset = options.String("preset", "tiny");
        int steps = options.Int("steps", 40), warmup = options.Int("warmup", 5), rounds = options.Int("rounds", 2);
        int microBatch = options.Int("micro-batch", 4), gradAccum = options.Int("grad-accum", 2);
        var data = options.String("data", Path.Combine(BenchRuns.RepositoryRoot(), "hocon", "runs", "data", "quickstart.jsonl"));
        options.EnsureAllRead();
        return RunAsync(preset, steps, warmup, rounds, microBatch, gradAccum, Path.GetFullPath(data)).GetAwaiter().GetResult();
    }

    static async Task<int> RunAsync(string preset, int steps, int warmup, int rounds, int microBatch, int gradAccum, string data)
    {
        var folder = BenchRuns.ScratchFolder("overhead");
        try
        {
            var model = BenchRuns.InitModel(preset, Path.Combine(folder, "model"));
            RunSpec SpecOf(int round) => BenchRuns.Spec(
                BenchRuns.SpecText($"overhead-{round}", model, data, Path.Combine(folder, $"run-{round}"), steps, microBatch, gradAccum), folder);
            var first = SpecOf(0);
            int threads = RuntimeSettings.From(RuntimeConfig.Reference).Worker.ThreadsFor(Environment.ProcessorCount, slots: 1);
            Console.WriteLine($"finetune overhead: '{preset}' ({LlamaConfig.Load(model).ParameterCount:N0} parameters), LoRA r 8 fp32, " +
                              $"{first.SamplesPerStep} samples a step ({microBatch} x {gradAccum}), {steps} steps, timed over steps {warmup + 1}..{steps}, " +
                              $"{threads} torch threads, {Environment.ProcessorCount} cores");

            var node = await RuntimeNode.StartAsync(FinetuneNode.Options(first, new FinetuneOptions { SpecPath = "bench.conf" }));
            await node.WhenUp;
            var client = RunClient.For(node);
            var loopSeconds = new List<double>();
            var runtimeSeconds = new List<double>();
            double betweenSteps = 0;
            long tokens = 0;
            try
            {
                for (int round = 0; round < rounds; round++)
                {
                    var spec = SpecOf(round);
                    var (loop, loopSteps, adapter, loopTokens) = Loop(spec, steps, warmup, threads);
                    var run = await BenchRuns.Follow(client, spec, spec.Name);
                    double actors = run.Seconds(warmup, steps);
                    tokens = run.LabelledTokens(warmup);
                    if (tokens != loopTokens) throw new InvalidOperationException($"the loop saw {loopTokens} labelled tokens, the runtime {tokens}");
                    double difference = BenchRuns.AdapterDifference(adapter, Path.Combine(spec.Output, RunOutputs.AdapterFolder));
                    loopSeconds.Add(loop);
                    runtimeSeconds.Add(actors);
                    Console.WriteLine($"round {round + 1}: loop {loop:F2} s ({tokens / loop:F1} labelled tokens/s), rt finetune {actors:F2} s " +
                                      $"({tokens / actors:F1} labelled tokens/s); overhead {actors / loop - 1:+0.0%;-0.0%}; " +
                                      $"adapters {(difference == 0 ? "bitwise equal" : $"differ by {difference:E2}")}");
                    // Where the difference is: inside the worker's steps, or between them (messages, driver, metrics).
                    var worker = run.Details.Where(d => d.Step > warmup).Select(d => d.Workers.Single().Timings.Seconds).ToList();
                    Console.WriteLine($"  per step: loop median {BenchRuns.Median(loopSteps):F3} s; worker median {BenchRuns.Median(worker):F3} s, " +
                                      $"slowest {worker.Max():F3} s, sum {worker.Sum():F2} s (the rest, {actors - worker.Sum():F2} s, is between steps)");
                    betweenSteps += actors - worker.Sum();
                }
            }
            finally
            {
                await node.LeaveAsync();
            }
            double loopBest = loopSeconds.Min(), runtimeBest = runtimeSeconds.Min();
            double loopMedian = BenchRuns.Median(loopSeconds), runtimeMedian = BenchRuns.Median(runtimeSeconds);
            Console.WriteLine($"best of {rounds}: loop {tokens / loopBest:F1} labelled tokens/s, rt finetune {tokens / runtimeBest:F1}; " +
                              $"overhead {runtimeBest / loopBest - 1:+0.0%;-0.0%} (median of rounds: {runtimeMedian / loopMedian - 1:+0.0%;-0.0%})");
            // Round-to-round noise on a shared 2-core machine is larger than the runtime's cost, so the sums over the
            // alternating rounds, and the part the runtime adds outside the worker's step, are the figures to read.
            double loopTotal = loopSeconds.Sum(), runtimeTotal = runtimeSeconds.Sum();
            Console.WriteLine($"all {rounds} rounds: loop {loopTotal:F2} s, rt finetune {runtimeTotal:F2} s, overhead {runtimeTotal / loopTotal - 1:+0.0%;-0.0%}; " +
                              $"median of the rounds' ratios {BenchRuns.Median(runtimeSeconds.Zip(loopSeconds, (r, l) => r / l)) - 1:+0.0%;-0.0%}; " +
                              $"between the worker's steps {betweenSteps:F2} s = {betweenSteps / runtimeTotal:P1} of the runtime's time");
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>The yardstick: the spec's model, LoRA, data, schedule and optimizer in one <see cref="TrainingLoop"/>.</summary>
    static (double Seconds, List<double> StepSeconds, Dictionary<string, float[]> Adapter, long Tokens) Loop(RunSpec spec, int steps, int warmup, int threads)
    {
        // On a thread of its own, as the worker's trainer runs on one (torch's thread-locals start fresh).
        (double, List<double>, Dictionary<string, float[]>, long) result = default;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = LoopOnThisThread(spec, steps, warmup, threads);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw new InvalidOperationException($"the loop failed: {failure.Message}", failure);
        return result;
    }

    static (double, List<double>, Dictionary<string, float[]>, long) LoopOnThisThread(RunSpec spec, int steps, int warmup, int threads)
    {
        torch.set_num_threads(threads);
        var config = LlamaConfig.Load(spec.Model);
        using var source = new HfModelFolder(spec.Model);
        using var model = LlamaLoader.Load(source, config, options: RunRecipe.ModelOptions(spec));
        LoraInjector.Inject(model, RunRecipe.Lora(spec)!, spec.Train.Seed);
        using var data = TrainingData.Open(spec.Data.Path, Llama3Tokenizer.Load(Llama3Tokenizer.TryFind(spec.Model)!), RunRecipe.DataOptions(spec));
        var options = new TrainingLoopOptions
        {
            Layout = RunRecipe.Layout(spec),
            Schedule = RunRecipe.Schedule(spec, steps),
            Optimizer = RunRecipe.Optimizer(spec),
            Seed = spec.Train.Seed,
            MaxSteps = steps,
        };
        using var loop = new TrainingLoop(model, TrainingBatches.From(data), options);
        var clock = new Stopwatch();
        var stepSeconds = new List<double>();
        long tokens = 0;
        for (int step = 1; step <= steps; step++)
        {
            if (step == warmup + 1) clock.Start();
            var started = clock.Elapsed.TotalSeconds;
            var record = loop.RunStep();
            if (step <= warmup) continue;
            tokens += record.LabelledTokens;
            stepSeconds.Add(clock.Elapsed.TotalSeconds - started);
        }
        clock.Stop();
        var adapter = LoraInjector.AdapterTensors(model).ToDictionary(t => t.Name, t => t.Tensor.detach().contiguous().data<float>().ToArray());
        return (clock.Elapsed.TotalSeconds, stepSeconds, adapter, tokens);
    }
}
