using Runtime.Training.Optim;
using TorchSharp;
using static Runtime.Training.Tests.Optim.OptimTestTensors;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class GradientClipperTests
{
    private static Tensor[] WithGradients(Generator generator, float scale, params long[][] shapes) =>
        shapes.Select(shape =>
        {
            var parameter = torch.zeros(shape).requires_grad_(true);
            parameter.grad = Randn(generator, shape) * scale;
            return parameter;
        }).ToArray();

    private static double ManualNorm(IEnumerable<Tensor> parameters) =>
        Math.Sqrt(parameters.SelectMany(p => Floats(p.grad!)).Sum(g => (double)g * g));

    [Fact]
    public void ScalesByMaxNormOverNormPlusEpsilon()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = WithGradients(new Generator(1), 3f, [6, 5], [11], [2, 2, 3]);
        var before = parameters.Select(p => Floats(p.grad!)).ToArray();
        double norm = ManualNorm(parameters);
        double coefficient = 1.0 / (norm + 1e-6);
        Assert.True(coefficient < 0.1); // a real clip

        var result = GradientClipper.ClipByGlobalNorm(parameters, maxNorm: 1.0);

        Assert.Equal(norm, result.TotalNorm, 1e-12 * norm);
        Assert.Equal(coefficient, result.Coefficient, 1e-12 * coefficient);
        for (int i = 0; i < parameters.Length; i++)
        {
            var expected = before[i].Select(g => g * (float)coefficient).ToArray(); // fp32 multiply, as torch's mul_
            Assert.Equal(expected, Floats(parameters[i].grad!));
        }
        Assert.Equal(1.0, ManualNorm(parameters), 1e-5);
    }

    [Fact]
    public void LeavesGradientsAloneWhenTheCoefficientClampsAtOne()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = WithGradients(new Generator(2), 0.01f, [4, 4], [7]);
        var before = parameters.Select(p => p.grad!.clone()).ToArray();

        var result = GradientClipper.ClipByGlobalNorm(parameters, maxNorm: 1.0);

        Assert.Equal(1.0, result.Coefficient);
        Assert.Equal(ManualNorm(parameters), result.TotalNorm, 1e-12);
        for (int i = 0; i < parameters.Length; i++) AssertBitwiseEqual(before[i], parameters[i].grad!, $"gradient {i}");
    }

    [Fact]
    public void AgreesWithTorchSharpsClipGradNorm()
    {
        using var scope = torch.NewDisposeScope();
        var ours = WithGradients(new Generator(3), 2f, [9, 8], [8], [3, 5]);
        var theirs = ours.Select(p =>
        {
            var parameter = new TorchSharp.Modules.Parameter(torch.zeros(p.shape));
            parameter.grad = p.grad!.clone();
            return parameter;
        }).ToArray();

        double theirNorm = torch.nn.utils.clip_grad_norm_(theirs, 0.5);
        var result = GradientClipper.ClipByGlobalNorm(ours, 0.5);

        Assert.Equal(theirNorm, result.TotalNorm, 1e-6 * theirNorm);
        for (int i = 0; i < ours.Length; i++) AssertClose(theirs[i].grad!, ours[i].grad!, 1e-6, 1e-9, $"gradient {i}");
    }

    [Fact]
    public void AgreesWithPyTorchsClipGradNorm()
    {
        var fixture = OptimFixtures.Load("pytorch-adamw.json");
        var tensors = fixture.GetProperty("tensors").EnumerateArray()
            .Select(e => (Name: e[0].GetString()!, Shape: e[1].EnumerateArray().Select(d => d.GetInt64()).ToArray())).ToArray();
        var clip = fixture.GetProperty("clip");
        using var scope = torch.NewDisposeScope();
        var parameters = tensors.Select((t, k) =>
        {
            var parameter = torch.zeros(t.Shape).requires_grad_(true);
            parameter.grad = OptimFixtures.Gradient(k, t.Shape, 1);
            return parameter;
        }).ToArray();

        var result = GradientClipper.ClipByGlobalNorm(parameters, clip.GetProperty("max_norm").GetDouble());

        double torchNorm = clip.GetProperty("total_norm").GetDouble();
        Assert.Equal(torchNorm, result.TotalNorm, 1e-6 * torchNorm);
        for (int k = 0; k < tensors.Length; k++)
        {
            var expected = OptimFixtures.Float32(clip.GetProperty("grads").GetProperty(tensors[k].Name).GetString()!, tensors[k].Shape);
            AssertClose(expected, parameters[k].grad!, 1e-6, 1e-9, tensors[k].Name);
        }
    }

    [Fact]
    public void LocalSquaredNormsOfTwoWorkersComposeToTheOneCallResult()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(4);
        var all = WithGradients(generator, 1f, [10, 3], [17], [4, 4], [5]);
        var copy = all.Select(p =>
        {
            var parameter = torch.zeros(p.shape).requires_grad_(true);
            parameter.grad = p.grad!.clone();
            return parameter;
        }).ToArray();
        Tensor[] workerA = [all[0], all[2]], workerB = [all[1], all[3]];

        double global = Math.Sqrt(GradientClipper.ComputeLocalSquaredNorm(workerA) + GradientClipper.ComputeLocalSquaredNorm(workerB));
        double coefficientA = GradientClipper.Clip(workerA, global, 0.25);
        double coefficientB = GradientClipper.Clip(workerB, global, 0.25);
        var oneCall = GradientClipper.ClipByGlobalNorm(copy, 0.25);

        Assert.Equal(oneCall.TotalNorm, global, 1e-12 * global);
        Assert.Equal(oneCall.Coefficient, coefficientA);
        Assert.Equal(coefficientA, coefficientB);
        Assert.True(coefficientA < 1);
        for (int i = 0; i < all.Length; i++) AssertBitwiseEqual(copy[i].grad!, all[i].grad!, $"gradient {i}");
    }

    [Fact]
    public void TheOneCallVersionTakesAnAllReduceHook()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(5);
        var mine = WithGradients(generator, 1f, [6, 6]);
        var others = WithGradients(generator, 1f, [20]);
        double othersSquared = GradientClipper.ComputeLocalSquaredNorm(others);
        double expectedNorm = ManualNorm(mine.Concat(others));

        var result = GradientClipper.ClipByGlobalNorm(mine, 0.5, local => local + othersSquared);

        Assert.Equal(expectedNorm, result.TotalNorm, 1e-12 * expectedNorm);
        Assert.Equal(0.5 / (expectedNorm + 1e-6), result.Coefficient, 1e-12);
    }

    [Fact]
    public void AccumulatesLargeGradientsInDoublePrecisionChunks()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = WithGradients(new Generator(6), 1f, [1_500_001]); // spans two fp64 chunks
        double expected = parameters.SelectMany(p => Floats(p.grad!)).Sum(g => (double)g * g);
        Assert.Equal(expected, GradientClipper.ComputeLocalSquaredNorm(parameters), 1e-12 * expected);
    }

    [Fact]
    public void SkipsParametersWithoutGradients()
    {
        using var scope = torch.NewDisposeScope();
        var withGrad = torch.zeros(2).requires_grad_(true);
        withGrad.grad = torch.tensor(new[] { 3f, 4f });
        var withoutGrad = torch.zeros(2).requires_grad_(true);
        var result = GradientClipper.ClipByGlobalNorm([withGrad, withoutGrad], 1.0);
        Assert.Equal(5.0, result.TotalNorm);
        Assert.Null(withoutGrad.grad);
    }
}
