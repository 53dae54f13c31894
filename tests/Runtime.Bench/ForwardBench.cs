using System.Diagnostics;
using Runtime.Model.Config;
using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Bench;

/// <summary>
/// `forward`: forward tokens/s of a preset (default small) per dtype, next to the same dtype's matmul GFLOP/s measured in
/// the same run (before and after the model, to bracket the machine's noise), giving the forward pass's MFU.
/// Model FLOPs per token follow llama-hf.md: 2 x (parameters in matmuls, lm_head included) + causal attention
/// 2 x 2 x layers x seq x (heads x head_dim) / 2.
/// </summary>
internal static class ForwardBench
{
    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        var preset = options.String("preset", "small");
        int batch = options.Int("batch", 1), seq = options.Int("seq", 512), threads = options.Int("threads", 2);
        int iterations = options.Int("iterations", 3);
        var dtypes = options.String("dtypes", "fp32,bf16").Split(',');
        options.EnsureAllRead();

        torch.set_num_threads(threads);
        var config = LlamaPresets.Get(preset);
        double flopsPerToken = 2.0 * (config.NumHiddenLayers * config.LayerLinearParameters + config.EmbeddingParameters)
                               + 2.0 * 2.0 * config.NumHiddenLayers * seq * config.NumAttentionHeads * config.HeadDim / 2.0;
        Console.WriteLine($"forward of '{preset}' ({config.ParameterCount:N0} parameters), batch {batch} x {seq} tokens, " +
                          $"{threads} torch threads, {flopsPerToken / 1e6:F1} MFLOP/token");
        Console.WriteLine($"{"dtype",-6} {"peak GFLOP/s (before/after)",30} {"tokens/s",10} {"model GFLOP/s",14} {"MFU",7}");
        foreach (var name in dtypes)
        {
            var dtype = name switch { "fp32" => ScalarType.Float32, "bf16" => ScalarType.BFloat16, _ => throw new ArgumentException($"--dtypes: {name}") };
            double before = MatmulPeak(dtype);
            // bf16 matmul may be slow on CPUs without bf16 units: fewer iterations keep the run short, not less exact.
            var throughput = LlamaForwardBenchmark.Measure(config, new LlamaModelOptions { DType = dtype }, batch, seq,
                iterations: dtype == ScalarType.BFloat16 ? Math.Max(1, iterations / 2) : iterations, warmup: 1);
            double after = MatmulPeak(dtype);
            double peak = Math.Max(before, after);
            double modelGflops = throughput.TokensPerSecond * flopsPerToken / 1e9;
            Console.WriteLine($"{name,-6} {$"{before:F1} / {after:F1}",30} {throughput.TokensPerSecond,10:F1} {modelGflops,14:F1} {modelGflops / peak,7:P1}");
        }
        return 0;
    }

    /// <summary>
    /// The machine's own peak in this dtype: the best GFLOP/s of square matmuls and of nn.functional.linear (the op
    /// Runtime's projections call, which libtorch may route to a different kernel, e.g. oneDNN for bf16) at a few sizes.
    /// </summary>
    public static double MatmulPeak(ScalarType dtype)
    {
        double best = 0;
        foreach (var n in new[] { 512, 1024, 2048 })
        {
            using var scope = NewDisposeScope();
            var a = randn(n, n).to(dtype);
            var b = randn(n, n).to(dtype);
            best = Math.Max(best, Gflops(2.0 * n * n * n, () => a.matmul(b).Dispose()));
            best = Math.Max(best, Gflops(2.0 * n * n * n, () => nn.functional.linear(a, b).Dispose()));
        }
        return best;
    }

    static double Gflops(double flops, Action op)
    {
        op(); // warm-up
        int reps = 1;
        var clock = Stopwatch.StartNew();
        // Repeat until a measurement lasts long enough to trust, without running for ages on slow kernels.
        while (true)
        {
            for (int i = 0; i < reps; i++) op();
            if (clock.Elapsed.TotalSeconds > 0.5 || reps > 64) break;
            reps *= 2;
            clock.Restart();
        }
        return flops * reps / clock.Elapsed.TotalSeconds / 1e9;
    }
}
