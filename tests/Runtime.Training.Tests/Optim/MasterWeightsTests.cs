using Runtime.Training.Optim;
using TorchSharp;
using static Runtime.Training.Tests.Optim.OptimTestTensors;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class MasterWeightsTests
{
    private const string Name = "model.layers.0.mlp.up_proj.weight";

    /// <summary>
    /// bf16 weights trained through fp32 masters end up exactly where fp32 training does, cast to bf16. The gradients
    /// are made bf16-representable (loss = sum(w * c) has gradient c exactly), so both runs see the same gradients; two
    /// micro-batches per step check that accumulation happens in fp32.
    /// </summary>
    [Fact]
    public void UpdatesEqualFp32TrainingFollowedByABf16Cast()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(9);
        var bf16 = Randn(generator, 8, 4).to(ScalarType.BFloat16).requires_grad_(true);
        var fp32 = bf16.detach().to(ScalarType.Float32).requires_grad_(true);
        var coefficients = Enumerable.Range(0, 6).Select(_ => Randn(generator, 8, 4).to(ScalarType.BFloat16)).ToArray();

        using var master = new MasterWeights([(Name, bf16)]);
        Assert.Equal(ScalarType.Float32, master.Parameters[0].Parameter.dtype);
        using var masterOptimizer = new AdamW(master.Parameters);
        using var referenceOptimizer = new AdamW([(Name, fp32)]);

        for (int step = 0; step < 3; step++)
        {
            for (int micro = 0; micro < 2; micro++)
            {
                var c = coefficients[2 * step + micro];
                (bf16 * c).sum().backward();
                master.AccumulateGradients();
                Assert.Null(bf16.grad);
                (fp32 * c.to(ScalarType.Float32)).sum().backward();
            }
            masterOptimizer.Step(0.05);
            master.CopyToModel();
            master.ZeroGrad();
            referenceOptimizer.Step(0.05);
            referenceOptimizer.ZeroGrad();

            AssertBitwiseEqual(fp32, master.Parameters[0].Parameter, $"fp32 master after step {step + 1}");
            AssertBitwiseEqual(fp32.to(ScalarType.BFloat16), bf16, $"bf16 weight after step {step + 1}");
        }
        // Some updates were below bf16 resolution: the master kept them, a bf16-only optimizer would have lost them.
        Assert.False(master.Parameters[0].Parameter.eq(bf16.to(ScalarType.Float32)).all().item<bool>());
    }

    [Fact]
    public void AccumulatesInFp32()
    {
        using var scope = torch.NewDisposeScope();
        var bf16 = torch.ones([1], ScalarType.BFloat16).requires_grad_(true);
        using var master = new MasterWeights([(Name, bf16)]);
        // 1 + 2^-9 is not representable in bf16 (8 significant bits); accumulated in bf16 it would round back to 1.
        foreach (var g in new[] { 1f, 1f / 512 })
        {
            bf16.grad = torch.tensor(new[] { g }).to(ScalarType.BFloat16);
            master.AccumulateGradients();
        }
        Assert.Equal(1f + 1f / 512, master.Parameters[0].Parameter.grad!.item<float>());
    }

    [Fact]
    public void RejectsDuplicateNamesAndIntegerTensors()
    {
        using var scope = torch.NewDisposeScope();
        Assert.Throws<ArgumentException>(() => new MasterWeights([("a", torch.ones(1)), ("a", torch.ones(1))]));
        var error = Assert.Throws<ArgumentException>(() => new MasterWeights([("ids", torch.ones([1], ScalarType.Int64))]));
        Assert.Contains("'ids'", error.Message);
    }
}
