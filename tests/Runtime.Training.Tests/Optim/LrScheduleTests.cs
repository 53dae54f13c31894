using Runtime.Training.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class LrScheduleTests
{
    private const double Base = 2e-4;

    /// <summary>
    /// total 100, warmup ratio 0.03 -> ceil(3.0) = 3 warmup steps. HF's lambdas by hand:
    /// warmup s/3; cosine 0.5 * (1 + cos(pi * (s - 3) / 97)); linear (100 - s) / 97; constant 1.
    /// </summary>
    [Theory]
    [InlineData(0, 0.0, 0.0, 0.0)]
    [InlineData(1, 6.666666666666667e-05, 6.666666666666667e-05, 6.666666666666667e-05)]
    [InlineData(2, 0.00013333333333333334, 0.00013333333333333334, 0.00013333333333333334)]
    [InlineData(3, 2e-4, 2e-4, 2e-4)]
    [InlineData(50, 0.00010485622221144484, 0.00010309278350515463, 2e-4)] // cos(pi*47/97); 2e-4 * (50/97)
    [InlineData(99, 5.2443095448506674e-08, 2.061855670103093e-06, 2e-4)] // 2e-4 * 0.5 * (1 + cos(pi*96/97)); 2e-4/97
    [InlineData(100, 0.0, 0.0, 2e-4)]
    public void MatchesHuggingFacesFormulasWithThreePercentWarmup(long step, double cosine, double linear, double constant)
    {
        Assert.Equal(3, LrSchedule.WarmupStepsFromRatio(100, 0.03));
        AssertNear(cosine, LrSchedule.WithWarmupRatio(LrScheduleKind.Cosine, Base, 100, 0.03).LearningRate(step));
        AssertNear(linear, LrSchedule.WithWarmupRatio(LrScheduleKind.Linear, Base, 100, 0.03).LearningRate(step));
        AssertNear(constant, LrSchedule.WithWarmupRatio(LrScheduleKind.Constant, Base, 100, 0.03).LearningRate(step));
    }

    private static void AssertNear(double expected, double actual) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-15 * Math.Abs(expected), $"lr {actual:R}, expected {expected:R}");

    /// <summary>transformers.get_scheduler's own learning rates, step by step, to the last bit (also past the end).</summary>
    [Theory]
    [InlineData("cosine", LrScheduleKind.Cosine)]
    [InlineData("linear", LrScheduleKind.Linear)]
    [InlineData("constant_with_warmup", LrScheduleKind.Constant)]
    public void EqualsTransformersSchedulersBitForBit(string hfName, LrScheduleKind kind)
    {
        var fixture = OptimFixtures.Load("hf-reference.json");
        foreach (var (warmup, total) in new[] { (3L, 100L), (0L, 10L), (5L, 5L) })
        {
            var expected = fixture.GetProperty($"{hfName}/{warmup}/{total}").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.Equal(total + 3, expected.Length);
            var schedule = new LrSchedule(kind, Base, total, warmup);
            for (int step = 0; step < expected.Length; step++)
                Assert.True(expected[step] == schedule.LearningRate(step),
                    $"{hfName} warmup {warmup} total {total} step {step}: {schedule.LearningRate(step):R}, HF {expected[step]:R}");
        }
    }

    [Fact]
    public void RoundsTheWarmupRatioAsTransformersDoes()
    {
        var fixture = OptimFixtures.Load("hf-reference.json").GetProperty("warmup");
        int checkedCount = 0;
        foreach (var entry in fixture.EnumerateObject())
        {
            var parts = entry.Name.Split('/');
            double ratio = double.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
            long total = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(entry.Value.GetInt64() == LrSchedule.WarmupStepsFromRatio(total, ratio), $"ratio {ratio}, total {total}");
            checkedCount++;
        }
        Assert.Equal(12, checkedCount);
        Assert.Equal(8, LrSchedule.WarmupStepsFromRatio(100, 0.07)); // 100 * 0.07 = 7.000000000000001 in doubles
    }

    [Fact]
    public void TheFirstUpdateUsesTheLearningRateOfStepZero()
    {
        using var scope = torch.NewDisposeScope();
        var schedule = new LrSchedule(LrScheduleKind.Linear, 0.1, totalSteps: 10, warmupSteps: 2);
        var weight = torch.tensor(new[] { 1f, -2f }).requires_grad_(true);
        using var adamw = new AdamW([("model.layers.0.mlp.up_proj.lora_A.weight", weight)]);

        weight.grad = torch.tensor(new[] { 0.5f, 0.5f });
        Assert.Equal(0.0, adamw.Step(schedule)); // HF: lr 0 at step 0 with warmup: nothing moves...
        OptimTestTensors.AssertBitwiseEqual(torch.tensor(new[] { 1f, -2f }), weight, "weights after update 1");
        Assert.Equal(1, adamw.StepCount);      // ...but the step (and the moments) advance

        weight.grad = torch.tensor(new[] { 0.5f, 0.5f });
        Assert.Equal(0.05, adamw.Step(schedule)); // update 2 uses LearningRate(1) = 0.1 * 1/2
        Assert.True(weight[0].item<float>() < 1f);
    }

    [Fact]
    public void RejectsNonsense()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(LrScheduleKind.Cosine, 1e-4, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(LrScheduleKind.Cosine, -1e-4, 10, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => LrSchedule.WarmupStepsFromRatio(10, 1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(LrScheduleKind.Linear, 1e-4, 10, 1).LearningRate(-1));
    }
}
