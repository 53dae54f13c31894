using System.Diagnostics;
using Runtime.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>Throughput of one timed measurement: tokens per second over the timed iterations.</summary>
public sealed record ForwardThroughput(long TokensPerIteration, int Iterations, TimeSpan Elapsed)
{
    public double TokensPerSecond => TokensPerIteration * Iterations / Elapsed.TotalSeconds;

    public override string ToString() => $"{TokensPerSecond:F0} tokens/s ({Iterations} x {TokensPerIteration} tokens in {Elapsed.TotalSeconds:F2} s)";
}

/// <summary>
/// Times the forward of a randomly initialised model (inference mode: no autograd graph) on random tokens, for the
/// bench target. The model is built once per call; warm-up iterations are not timed.
/// </summary>
public static class LlamaForwardBenchmark
{
    public static ForwardThroughput Measure(LlamaConfig config, LlamaModelOptions options, int batch, int sequenceLength,
        int iterations = 5, int warmup = 1, long seed = 0)
    {
        if (batch <= 0 || sequenceLength <= 0 || iterations <= 0 || warmup < 0)
            throw new ArgumentException("batch, sequence length and iterations must be positive, warm-up not negative");
        using var model = new LlamaInitializer(seed).CreateSlice(config, LlamaSliceSpec.Whole(config), options with { RequiresGrad = false });
        return Measure(model, batch, sequenceLength, iterations, warmup, seed);
    }

    /// <summary>Times the forward of an existing whole-model slice.</summary>
    public static ForwardThroughput Measure(LlamaSlice model, int batch, int sequenceLength, int iterations = 5, int warmup = 1,
        long seed = 0)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var random = new torch.Generator((ulong)seed);
        var device = model.Options.Device ?? CPU;
        var tokens = randint(0, model.Config.VocabSize, [batch, sequenceLength], generator: random, dtype: ScalarType.Int64, device: device);
        var positions = AttentionContext.SequentialPositions(batch, sequenceLength, 0, device);
        using var context = model.CreateContext(positions);

        for (int i = 0; i < warmup; i++)
            model.call(tokens, context).Dispose();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++)
            model.call(tokens, context).Dispose();
        return new ForwardThroughput((long)batch * sequenceLength, iterations, clock.Elapsed);
    }
}
