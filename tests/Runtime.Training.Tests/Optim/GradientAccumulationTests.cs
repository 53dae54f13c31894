using Runtime.Training.Optim;
using TorchSharp;
using static Runtime.Training.Tests.Optim.OptimTestTensors;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

/// <summary>
/// A linear classifier with cross entropy (ignore index -100) stands in for the language-model head: four micro-batches
/// of different sizes and different numbers of labelled targets (2, 5, 1, 3).
/// </summary>
public class GradientAccumulationTests
{
    private const int Features = 6, Classes = 5;

    private static readonly long[][] Targets =
    [
        [3, -100, 0],
        [1, 4, 4, 0, 2],
        [-100, 2, -100, -100],
        [-100, 1, 3, 0, -100, -100],
    ];

    private sealed class Model
    {
        public Tensor Weight { get; }
        public Tensor Bias { get; }

        public Model(Tensor weight, Tensor bias)
        {
            Weight = weight.clone().requires_grad_(true);
            Bias = bias.clone().requires_grad_(true);
        }

        public Tensor SummedLoss(Tensor inputs, Tensor targets) =>
            nn.functional.cross_entropy(inputs.matmul(Weight.t()) + Bias, targets, ignore_index: -100, reduction: nn.Reduction.Sum);

        public Tensor MeanLoss(Tensor inputs, Tensor targets) =>
            nn.functional.cross_entropy(inputs.matmul(Weight.t()) + Bias, targets, ignore_index: -100, reduction: nn.Reduction.Mean);
    }

    private static (Tensor Weight, Tensor Bias, Tensor[] Inputs, Tensor[] Targets) Data()
    {
        var generator = new Generator(8);
        // fp64 so the comparison can be tight: the point is the scaling, not fp32 rounding.
        var weight = torch.randn([Classes, Features], ScalarType.Float64, generator: generator);
        var bias = torch.randn([Classes], ScalarType.Float64, generator: generator);
        var inputs = Targets.Select(t => torch.randn([t.Length, Features], ScalarType.Float64, generator: generator)).ToArray();
        return (weight, bias, inputs, Targets.Select(t => torch.tensor(t)).ToArray());
    }

    private static Model Reference(Tensor weight, Tensor bias, Tensor[] inputs, Tensor[] targets)
    {
        var model = new Model(weight, bias);
        model.MeanLoss(torch.cat(inputs, 0), torch.cat(targets, 0)).backward();
        return model;
    }

    [Fact]
    public void SummedLossOverTheStepsTokenCountGivesTheGradientOfTheWholeBatchMean()
    {
        using var scope = torch.NewDisposeScope();
        var (weight, bias, inputs, targets) = Data();
        long total = targets.Sum(GradientAccumulation.CountLabelledTokens);
        Assert.Equal(11, total);

        var accumulated = new Model(weight, bias);
        for (int i = 0; i < inputs.Length; i++)
            GradientAccumulation.ScaleLoss(accumulated.SummedLoss(inputs[i], targets[i]), total).backward();

        var reference = Reference(weight, bias, inputs, targets);
        AssertClose(reference.Weight.grad!, accumulated.Weight.grad!, 1e-12, 1e-14, "weight gradient");
        AssertClose(reference.Bias.grad!, accumulated.Bias.grad!, 1e-12, 1e-14, "bias gradient");
    }

    [Fact]
    public void DataParallelReplicasSummingTheirGradientsGiveTheSameGradient()
    {
        using var scope = torch.NewDisposeScope();
        var (weight, bias, inputs, targets) = Data();
        long total = targets.Sum(GradientAccumulation.CountLabelledTokens); // known to both replicas up front

        var replicas = new[] { new Model(weight, bias), new Model(weight, bias) };
        for (int i = 0; i < inputs.Length; i++)
            GradientAccumulation.ScaleLoss(replicas[i % 2].SummedLoss(inputs[i], targets[i]), total).backward();
        var allReducedWeight = replicas[0].Weight.grad! + replicas[1].Weight.grad!; // an all-reduce with SUM

        var reference = Reference(weight, bias, inputs, targets);
        AssertClose(reference.Weight.grad!, allReducedWeight, 1e-12, 1e-14, "all-reduced weight gradient");
    }

    [Fact]
    public void AveragingPerMicroBatchMeansWouldBeWrongHere()
    {
        using var scope = torch.NewDisposeScope();
        var (weight, bias, inputs, targets) = Data();
        var naive = new Model(weight, bias);
        for (int i = 0; i < inputs.Length; i++) (naive.MeanLoss(inputs[i], targets[i]) / inputs.Length).backward();

        var reference = Reference(weight, bias, inputs, targets);
        double difference = (reference.Weight.grad! - naive.Weight.grad!).abs().max().item<double>();
        Assert.True(difference > 1e-3, $"the naive gradient differs by only {difference}; the test data would not catch a wrong scaling");
    }

    [Fact]
    public void MeanLossIsTheLossOfTheWholeBatch()
    {
        using var scope = torch.NewDisposeScope();
        var (weight, bias, inputs, targets) = Data();
        var model = new Model(weight, bias);
        var sums = inputs.Select((x, i) => model.SummedLoss(x, targets[i]).item<double>()).ToList();
        double expected = model.MeanLoss(torch.cat(inputs, 0), torch.cat(targets, 0)).item<double>();
        Assert.Equal(expected, GradientAccumulation.MeanLoss(sums, 11), 1e-12);
    }

    [Fact]
    public void AStepWithoutLabelledTokensIsAnError()
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(0, GradientAccumulation.CountLabelledTokens(torch.tensor(new long[] { -100, -100 })));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradientAccumulation.ScaleLoss(torch.tensor(1.0), 0));
    }
}
