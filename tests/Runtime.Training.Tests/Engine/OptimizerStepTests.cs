using Runtime.Training.Engine;
using Runtime.Training.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

public class OptimizerStepTests
{
    static readonly LrSchedule Schedule = new(LrScheduleKind.Constant, 1e-2, 10, 0);

    /// <summary>Four named fp32 leaves with fixed gradients (large enough that clipping at 1.0 acts).</summary>
    static List<(string Name, Tensor Parameter)> Parameters(ScalarType dtype = ScalarType.Float32)
    {
        using var generator = new Generator(7);
        var list = new List<(string, Tensor)>();
        foreach (var (name, shape) in new[] { ("a.weight", new long[] { 4, 3 }), ("b.weight", new long[] { 5 }), ("c.weight", new long[] { 2, 2 }), ("d_norm.weight", new long[] { 3 }) })
        {
            var p = randn(shape, generator: generator).to(dtype).requires_grad_(true).DetachFromDisposeScope();
            p.grad = (randn(shape, generator: generator) * 3).to(dtype).DetachFromDisposeScope();
            list.Add((name, p));
        }
        return list;
    }

    [Fact]
    public void Two_workers_with_a_summing_hook_clip_and_step_as_one_worker_owning_everything()
    {
        var all = Parameters();
        using var single = new OptimizerStep(all, Schedule);
        var whole = single.Step();

        var left = Parameters().Take(2).ToList();
        var right = Parameters().Skip(2).ToList();
        using var first = new OptimizerStep(left, Schedule);
        using var second = new OptimizerStep(right, Schedule);
        // The all-reduce of the squared norms, done by hand: each worker gets the sum of both locals.
        double leftSquared = first.LocalSquaredGradNorm(), rightSquared = second.LocalSquaredGradNorm();
        var a = first.Step(local => local + rightSquared);
        var b = second.Step(local => leftSquared + local);

        Assert.True(whole.ClipCoefficient < 1, $"clipping should act (norm {whole.GradNorm})");
        Assert.Equal(whole.GradNorm, a.GradNorm, 12);
        Assert.Equal(a.GradNorm, b.GradNorm);
        Assert.Equal((1L, 1e-2), (a.Step, a.LearningRate));
        foreach (var ((name, expected), (_, actual)) in all.Zip(left.Concat(right)))
            MicroModel.AssertClose(MicroModel.Values(expected), MicroModel.Values(actual), 1e-7, name);
        Assert.All(left.Concat(right), p => Assert.Null(p.Parameter.grad));
    }

    [Fact]
    public void Without_a_threshold_the_norm_is_reported_and_nothing_is_clipped()
    {
        var parameters = Parameters();
        double expectedNorm = Math.Sqrt(parameters.Sum(p => MicroModel.Values(p.Parameter.grad!).Sum(v => v * v)));
        using var step = new OptimizerStep(parameters, Schedule, new OptimizerStepOptions { MaxGradNorm = null });
        var result = step.Step();
        Assert.Equal(expectedNorm, result.GradNorm, 9);
        Assert.Equal(1.0, result.ClipCoefficient);
    }

    [Fact]
    public void Bf16_weights_train_through_fp32_masters_rounded_back_after_the_step()
    {
        var parameters = Parameters(ScalarType.BFloat16);
        using var step = new OptimizerStep(parameters, Schedule);
        Assert.True(step.UsesMasterWeights);
        Assert.All(step.Parameters, p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        var before = MicroModel.Values(parameters[0].Parameter);

        step.Step();

        for (int i = 0; i < parameters.Count; i++)
        {
            using var scope = NewDisposeScope();
            Assert.Equal(MicroModel.Bits(step.Parameters[i].Parameter.to(ScalarType.BFloat16)), MicroModel.Bits(parameters[i].Parameter));
        }
        Assert.NotEqual(before, MicroModel.Values(parameters[0].Parameter));
        Assert.All(parameters, p => Assert.Null(p.Parameter.grad));
    }
}
