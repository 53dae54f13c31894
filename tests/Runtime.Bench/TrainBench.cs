using System.Diagnostics;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Metrics;
using Runtime.Training.Optim;
using Runtime.Training.Planning;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Bench;

/// <summary>
/// `train` (issue 3): training tokens/s of a preset (default small, made by `rt init`) per method and dtype, with the
/// real engine (<see cref="TrainingLoop"/>: the <see cref="StageEngine"/> and <see cref="OptimizerStep"/> a worker
/// drives, AdamW with clipping), on full rows of random token ids; each case bracketed by its dtype's matmul peak
/// measured in the same process just before and after it (<see cref="ForwardBench.MatmulPeak"/>), giving MFU = counted training FLOP/s
/// (<see cref="TrainingFlops"/>) / peak. Then the memory of a step by category (<see cref="MemoryAccounting"/>, the
/// activation peak sampled from a watcher thread) next to the planner's prediction for the same shape. Every case
/// loads its own model; the memory passes run apart from the timed steps because the watcher takes a core.
/// </summary>
internal static class TrainBench
{
    sealed record Case(FineTuneMethod Method, ScalarType DType)
    {
        public string MethodName => PlanNames.Method(Method);

        public string DTypeName => DType == ScalarType.BFloat16 ? "bf16" : "fp32";

        public static Case Parse(string text)
        {
            var parts = text.Split(':');
            if (parts.Length != 2) throw new ArgumentException($"a case is method:dtype (e.g. lora:bf16), got '{text}'");
            var method = parts[0] switch
            {
                "lora" => FineTuneMethod.Lora, "qlora" => FineTuneMethod.Qlora, "full" => FineTuneMethod.Full,
                _ => throw new ArgumentException($"method '{parts[0]}' in '{text}': lora, qlora or full"),
            };
            var dtype = parts[1] switch
            {
                "fp32" => ScalarType.Float32, "bf16" => ScalarType.BFloat16,
                _ => throw new ArgumentException($"dtype '{parts[1]}' in '{text}': fp32 or bf16"),
            };
            return new Case(method, dtype);
        }
    }

    sealed record Settings(string ModelFolder, LlamaConfig Config, int Batch, int Sequence, int Rank, bool Recompute, RandomTokenRows Rows);

    sealed record Timed(Case Case, int Steps, double Seconds, double FastestStep, double SlowestStep, long Tokens, TrainingFlops Flops)
    {
        public double TokensPerSecond => Tokens / Seconds;

        public double Gflops => TokensPerSecond * Flops.PerToken / 1e9;
    }

    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        var preset = options.String("preset", "small");
        int batch = options.Int("batch", 1), seq = options.Int("seq", 256), threads = options.Int("threads", 2), rank = options.Int("rank", 8);
        int warmup = options.Int("warmup", 1), fp32Steps = options.Int("steps", 5), bf16Steps = options.Int("bf16-steps", 1);
        var recompute = options.String("recompute", "off") switch
        {
            "on" => true, "off" => false, var other => throw new ArgumentException($"--recompute: on or off, got '{other}'"),
        };
        var cases = options.String("cases", "lora:fp32,qlora:fp32,full:fp32,lora:bf16,qlora:bf16").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Case.Parse).ToList();
        var memoryCases = options.String("memory", "lora:fp32,qlora:fp32,full:fp32,qlora:bf16").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Case.Parse).ToList();
        options.EnsureAllRead();

        torch.set_num_threads(threads);
        var folder = BenchRuns.ScratchFolder("train");
        try
        {
            var model = BenchRuns.InitModel(preset, Path.Combine(folder, "model"));
            var config = LlamaConfig.Load(model);
            var settings = new Settings(model, config, batch, seq, rank, recompute, new RandomTokenRows(64, seq, config.VocabSize, seed: 1));
            Console.WriteLine($"train: '{preset}' ({config.ParameterCount:N0} parameters), batch {batch} x {seq} tokens (full rows of random ids), " +
                              $"LoRA r {rank} alpha {2 * rank} on all seven projections, AdamW, recompute {(recompute ? "on" : "off")}, " +
                              $"{threads} torch threads, {Environment.ProcessorCount} cores; {warmup} warm-up step(s), then {fp32Steps} fp32 / {bf16Steps} bf16 timed");
            var lora = new TrainingFlops(config, FineTuneMethod.Lora, rank, seq, recompute);
            Console.WriteLine($"N = {lora.Projections + lora.Head:N0} (projections {lora.Projections:N0} + head {lora.Head:N0}), N_A = {lora.Adapters:N0}, " +
                              $"A = {lora.Attention / 1e6:F2} MFLOP/token");
            if (cases.Count > 0) Throughput(settings, cases, warmup, fp32Steps, bf16Steps);
            if (memoryCases.Count > 0) Memory(settings, memoryCases);
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Each case between two measurements of its dtype's peak, so that a machine whose speed changes (other jobs
    /// starting or stopping) shows up as brackets that disagree, and MFU is against the higher of the two.</summary>
    static void Throughput(Settings settings, List<Case> cases, int warmup, int fp32Steps, int bf16Steps)
    {
        var rows = new List<string>();
        foreach (var c in cases)
        {
            double before = ForwardBench.MatmulPeak(c.DType);
            Console.WriteLine($"{c.DTypeName} matmul peak before {c.MethodName}: {before:F1} GFLOP/s");
            var t = Time(settings, c, warmup, c.DType == ScalarType.BFloat16 ? bf16Steps : fp32Steps);
            double after = ForwardBench.MatmulPeak(c.DType);
            Console.WriteLine($"{c.DTypeName} matmul peak after {c.MethodName}: {after:F1} GFLOP/s");
            double peak = Math.Max(before, after);
            var row = $"| {c.MethodName} | {c.DTypeName} | {t.Steps} | {t.Seconds / t.Steps:F1} ({t.FastestStep:F1}-{t.SlowestStep:F1}) | {t.TokensPerSecond:F1} | " +
                      $"{t.Flops.Formula} = {t.Flops.PerToken / 1e6:F1} | {t.Gflops:F1} | {before:F1} / {after:F1} | {t.Gflops / peak:P1} |";
            Console.WriteLine(row);
            rows.Add(row);
        }
        Console.WriteLine();
        Console.WriteLine("| method | dtype | steps timed | s/step (fastest-slowest) | tokens/s | MFLOP/token | GFLOP/s | peak GFLOP/s (before / after) | MFU |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows) Console.WriteLine(row);
        Console.WriteLine();
    }

    static void Memory(Settings settings, List<Case> cases)
    {
        var rows = new List<string>();
        foreach (var c in cases)
        {
            var measured = MeasureMemory(settings, c);
            var planned = Plan(settings, c);
            string Cell(long m, long? p) => p is { } value ? $"{m / 1e6:F1} ({value / 1e6:F1})" : $"{m / 1e6:F1}";
            var row = $"| {c.MethodName} | {c.DTypeName} | {Cell(measured.Weights, planned?.Memory.Weights)} | {Cell(measured.Trainable, planned?.Memory.Trainable)} | " +
                      $"{Cell(measured.Gradients, planned?.Memory.Gradients)} | {Cell(measured.Optimizer, planned?.Memory.Optimizer)} | " +
                      $"{Cell(measured.ActivationsSaved, planned?.Saved)} | {Cell(measured.ActivationsPeak ?? -1, planned?.Memory.Activations)} | " +
                      $"{Cell(measured.Weights + measured.Trainable + measured.Gradients + measured.Optimizer + (measured.ActivationsPeak ?? 0), planned is null ? null : Sum(planned.Value.Memory))} | " +
                      $"{measured.HeapInUse / 1e6:F1} |";
            Console.WriteLine(row);
            rows.Add(row);
        }
        Console.WriteLine();
        Console.WriteLine("MB (10^6 bytes), measured (planned): rt plan's categories for one stage, one micro-batch, fused attention, engine runtime-cpu");
        Console.WriteLine("| method | dtype | weights | trainable | gradients | optimizer | activations saved | activations peak | sum | heap in use |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows) Console.WriteLine(row);
    }

    static long Sum(MemoryBreakdown m) => m.Weights + m.Trainable + m.Gradients + m.Optimizer + m.Activations;

    /// <summary>The model as a worker builds it (<c>RunRecipe.ModelOptions</c> and <c>RunRecipe.Lora</c>): LoRA frozen base
    /// in the dtype, QLoRA's projections quantized to NF4 from the dtype, full fine-tuning training every parameter.</summary>
    static LlamaSlice Build(Settings settings, Case c)
    {
        using var source = new HfModelFolder(settings.ModelFolder);
        var model = LlamaLoader.Load(source, settings.Config, options: new LlamaModelOptions
        {
            DType = c.DType, RequiresGrad = true,
            ProjectionBase = c.Method == FineTuneMethod.Qlora ? ProjectionBase.Nf4 : ProjectionBase.Dense,
        });
        if (c.Method != FineTuneMethod.Full)
            LoraInjector.Inject(model, new LoraConfig(settings.Rank, 2 * settings.Rank, 0.0, LoraConfig.AllTargets), seed: 42);
        return model;
    }

    static TrainingLoop Loop(LlamaSlice model, Settings settings, int steps, bool watchPeak) =>
        new(model, settings.Rows.Batches(), new TrainingLoopOptions
        {
            Layout = new BatchLayout(settings.Batch, 1, 1),
            Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-4, steps, 0),
            MaxSteps = steps, Recompute = settings.Recompute, Seed = 42, WatchActivationPeak = watchPeak,
        });

    static Timed Time(Settings settings, Case c, int warmup, int steps)
    {
        using var model = Build(settings, c);
        var flops = new TrainingFlops(settings.Config, c.Method, settings.Rank, settings.Sequence, settings.Recompute);
        using var loop = Loop(model, settings, warmup + steps, watchPeak: false);
        // The count of what is trained must be the model's, or the FLOPs are of another model.
        double trained = loop.Engine.TrainableParameters.Sum(p => (double)p.Parameter.numel());
        double expected = c.Method == FineTuneMethod.Full ? settings.Config.ParameterCount : flops.Adapters;
        if (trained != expected) throw new InvalidOperationException($"{c}: {trained:N0} trainable parameters, the FLOP count assumes {expected:N0}");

        for (int i = 0; i < warmup; i++)
        {
            var record = loop.RunStep();
            Console.WriteLine($"  {c.MethodName} {c.DTypeName} warm-up step {record.Step}: {record.Elapsed.TotalSeconds:F1} s, loss {record.Loss:F3}");
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        var stepSeconds = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var record = loop.RunStep();
            tokens += record.InputTokens;
            stepSeconds.Add(record.Elapsed.TotalSeconds);
            Console.WriteLine($"  {c.MethodName} {c.DTypeName} step {record.Step}: {record.Elapsed.TotalSeconds:F1} s, loss {record.Loss:F3}");
        }
        clock.Stop();
        return new Timed(c, steps, clock.Elapsed.TotalSeconds, stepSeconds.Min(), stepSeconds.Max(), tokens, flops);
    }

    /// <summary>A warm-up step (gradients' and AdamW state's first allocation), then one measured step with the
    /// activation peak watched, as the planned-versus-measured tests measure.</summary>
    static StepMemory MeasureMemory(Settings settings, Case c)
    {
        using var model = Build(settings, c);
        using var loop = Loop(model, settings, 2, watchPeak: true);
        loop.RunStep();
        // Tensors left to the finalizer must not be freed in the middle of the measured step.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var record = loop.RunStep();
        Console.WriteLine($"  {c.MethodName} {c.DTypeName} memory step: {record.Elapsed.TotalSeconds:F1} s");
        return record.Memory ?? throw new InvalidOperationException("the loop measured no memory");
    }

    /// <summary>rt plan's breakdown for the same step: one stage, one rank, one micro-batch, fused attention, the CPU
    /// engine's activation counts. The planner sizes QLoRA only in bf16 (NF4 dequantizes to bf16 on GPUs).</summary>
    static (MemoryBreakdown Memory, long Saved)? Plan(Settings settings, Case c)
    {
        var precision = c.DType == ScalarType.BFloat16 ? ComputePrecision.Bf16 : ComputePrecision.Fp32;
        if (c.Method == FineTuneMethod.Qlora && precision == ComputePrecision.Fp32) return null;
        var request = new PlanRequest
        {
            Model = settings.Config, Method = c.Method, Lora = new LoraSettings(settings.Rank, LinearModule.AllNames), Precision = precision,
            MicroBatchSize = settings.Batch, SequenceLength = settings.Sequence, Packing = false, GradientCheckpointing = settings.Recompute,
            MicroBatches = 1, Attention = AttentionKernel.Fused, Engine = ActivationEngine.RuntimeCpu,
            Gpu = new GpuSpec("cpu", "host memory", 1L << 40, 1, "bench"), Tp = 1, Pp = 1, Dp = 1,
        };
        var memory = MemoryPlanner.PlanLayout(request, new ParallelLayout(1, 1, 1)).Stages[0].Memory;
        long saved = new ActivationModel(request, 1).SavedBytes((long)settings.Batch * settings.Sequence, settings.Config.NumHiddenLayers, 1,
            lastStage: true, settings.Recompute);
        return (memory, saved);
    }
}
