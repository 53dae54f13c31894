using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Bench;

/// <summary>
/// `linear-kernels`: GFLOP/s of one projection's three matmuls per dtype, as autograd runs them: the forward
/// (<c>linear(x, W)</c>), the input gradient (<c>g.mm(W)</c>) and the weight gradient (<c>g^T.mm(x)</c>), and a forward
/// with its input-gradient backward through autograd. libtorch may route each to a different kernel (the forward bench
/// saw bf16 <c>linear</c> far faster than bf16 <c>matmul</c> on CPUs without bf16 units), which is what decides how
/// much of the forward's speed a training step keeps. Default shape: the small preset's up_proj on 256 tokens.
/// </summary>
internal static class LinearKernelBench
{
    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        int tokens = options.Int("tokens", 256), input = options.Int("in", 768), output = options.Int("out", 2048), threads = options.Int("threads", 2);
        var dtypes = options.String("dtypes", "fp32,bf16").Split(',');
        options.EnsureAllRead();

        torch.set_num_threads(threads);
        Console.WriteLine($"x [{tokens}, {input}], W [{output}, {input}], {threads} torch threads; GFLOP/s (2 x tokens x in x out a matmul)");
        Console.WriteLine($"| dtype | linear(x, W) | g.mm(W) (input grad) | g^T.mm(x) (weight grad) | linear + backward to x (autograd) |");
        Console.WriteLine("|---|---|---|---|---|");
        double flops = 2.0 * tokens * input * output;
        foreach (var name in dtypes)
        {
            var dtype = name switch { "fp32" => ScalarType.Float32, "bf16" => ScalarType.BFloat16, _ => throw new ArgumentException($"--dtypes: {name}") };
            using var scope = NewDisposeScope();
            var x = randn(tokens, input).to(dtype);
            var w = randn(output, input).to(dtype);
            var g = randn(tokens, output).to(dtype);
            var leaf = x.detach().requires_grad_(true);
            double forward = Gflops(flops, () => nn.functional.linear(x, w).Dispose());
            double inputGrad = Gflops(flops, () => g.mm(w).Dispose());
            double weightGrad = Gflops(flops, () => g.t().mm(x).Dispose());
            double autograd = Gflops(2 * flops, () =>
            {
                using var step = NewDisposeScope();
                nn.functional.linear(leaf, w).backward([g]);
                leaf.grad = null;
            });
            Console.WriteLine($"| {name} | {forward:F1} | {inputGrad:F1} | {weightGrad:F1} | {autograd:F1} |");
        }
        return 0;
    }

    static double Gflops(double flops, Action op)
    {
        op(); // warm-up
        int reps = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 1 || reps < 2)
        {
            op();
            reps++;
        }
        return flops * reps / clock.Elapsed.TotalSeconds / 1e9;
    }
}
