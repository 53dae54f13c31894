using Runtime.Training.Optim;
using TorchSharp;
using static Runtime.Training.Tests.Optim.OptimTestTensors;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class AdamWTests
{
    private static readonly long[][] Shapes = [[7, 5], [33], [4, 3, 2]];

    [Fact]
    public void MatchesTorchSharpsAdamWWithTheSameHyperparameters()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(11);
        var initial = Shapes.Select(s => Randn(generator, s)).ToArray();
        var grads = Enumerable.Range(0, 5).Select(_ => Shapes.Select(s => Randn(generator, s)).ToArray()).ToArray();
        double[] lrs = [2e-4, 1e-3, 5e-2, 3e-3, 1e-2];

        // TorchSharp's AdamW: explicit weight decay and beta2 (its factory defaults are 0 and 0.99).
        var theirs = initial.Select(t => new TorchSharp.Modules.Parameter(t.clone())).ToArray();
        using var reference = torch.optim.AdamW(theirs, lr: lrs[0], beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01);
        var ours = initial.Select(t => t.clone().requires_grad_(true)).ToArray();
        using var adamw = new AdamW(ours.Select((p, i) => ($"p{i}", p)),
            new AdamWOptions { WeightDecay = 0.01, AppliesWeightDecay = WeightDecayRules.All });

        for (int step = 0; step < lrs.Length; step++)
        {
            foreach (var group in reference.ParamGroups) group.LearningRate = lrs[step];
            for (int i = 0; i < Shapes.Length; i++)
            {
                theirs[i].grad = grads[step][i].clone();
                ours[i].grad = grads[step][i].clone();
            }
            reference.step();
            adamw.Step(lrs[step]);
        }

        // TorchSharp updates exp_avg with mul_/add_ where PyTorch (and we) use lerp_: last-bit differences only.
        for (int i = 0; i < Shapes.Length; i++)
            AssertClose(theirs[i], ours[i], 1e-6, 1e-7, $"p{i} after 5 steps");
        Assert.Equal(5, adamw.StepCount);
        // The parameters really moved, so agreement is not trivial.
        Assert.True(Doubles(initial[0]).Zip(Doubles(ours[0])).Max(x => Math.Abs(x.First - x.Second)) > 1e-3);
    }

    [Fact]
    public void MatchesAHandWrittenDoublePrecisionLoop()
    {
        double[] start = [0.5, -1.25, 2.0, 0.001, -0.3];
        double[][] grads = [[0.1, -0.2, 0.3, 0.0, 1.5], [-0.05, 0.4, 0.3, 2.0, -1.0], [0.2, 0.2, -0.6, -0.01, 0.7]];
        double[] lrs = [0.1, 0.05, 0.2];
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, decay = 0.01;

        // Adam with decoupled decay, straight from the paper's notation, in doubles.
        var p = (double[])start.Clone();
        var m = new double[p.Length];
        var v = new double[p.Length];
        for (int t = 1; t <= 3; t++)
        {
            double lr = lrs[t - 1];
            for (int i = 0; i < p.Length; i++)
            {
                double g = grads[t - 1][i];
                p[i] -= lr * decay * p[i];
                m[i] = beta1 * m[i] + (1 - beta1) * g;
                v[i] = beta2 * v[i] + (1 - beta2) * g * g;
                double mHat = m[i] / (1 - Math.Pow(beta1, t));
                double vHat = v[i] / (1 - Math.Pow(beta2, t));
                p[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
        }

        foreach (var (dtype, tolerance) in new[] { (ScalarType.Float64, 1e-13), (ScalarType.Float32, 2e-6) })
        {
            using var scope = torch.NewDisposeScope();
            var parameter = torch.tensor(start, dtype).requires_grad_(true);
            using var adamw = new AdamW([("model.layers.0.mlp.up_proj.lora_A.weight", parameter)]);
            for (int t = 0; t < 3; t++)
            {
                parameter.grad = torch.tensor(grads[t], dtype);
                adamw.Step(lrs[t]);
            }
            AssertClose(p, Doubles(parameter), tolerance, tolerance, $"{dtype} weights after 3 steps");
        }
    }

    /// <summary>
    /// Against torch.optim.AdamW (PyTorch 2.11, CPU, two parameter groups, HF cosine lrs) over 8 steps. The moments are
    /// compared bit for bit. The weights are compared to a few fp32 ulps: their update goes through libtorch's float
    /// sqrt, which is not correctly rounded and rounds differently on the AVX-512 machine that made the fixture than on
    /// an AVX2 build machine (measured: 12 of 1233 weights differ, by at most 4 ulps; the moments are identical).
    /// </summary>
    [Fact]
    public void MatchesPyTorch()
    {
        var fixture = OptimFixtures.Load("pytorch-adamw.json");
        var lrs = fixture.GetProperty("lrs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var tensors = fixture.GetProperty("tensors").EnumerateArray()
            .Select(e => (Name: e[0].GetString()!, Shape: e[1].EnumerateArray().Select(d => d.GetInt64()).ToArray(), Decay: e[2].GetInt32() == 1))
            .ToArray();

        using var scope = torch.NewDisposeScope();
        var parameters = tensors.Select((t, k) => OptimFixtures.InitialWeight(k, t.Shape).requires_grad_(true)).ToArray();
        using var adamw = new AdamW(tensors.Select((t, k) => (t.Name, parameters[k]))); // default options: the HF recipe
        Assert.Equal(tensors.Where(t => t.Decay).Select(t => t.Name), adamw.DecayedParameterNames);

        for (int step = 0; step < lrs.Length; step++)
        {
            for (int k = 0; k < tensors.Length; k++) parameters[k].grad = OptimFixtures.Gradient(k, tensors[k].Shape, step);
            adamw.Step(lrs[step]);
        }

        using var state = new DisposableState(adamw.ExportState());
        var expected = fixture.GetProperty("single");
        for (int k = 0; k < tensors.Length; k++)
        {
            var (name, shape, _) = tensors[k];
            var values = expected.GetProperty(name);
            AssertClose(OptimFixtures.Float32(values[0].GetString()!, shape), parameters[k], 1e-6, 1e-8, $"{name} weight");
            AssertBitwiseEqual(OptimFixtures.Float32(values[1].GetString()!, shape), state[name + AdamW.ExpAvgSuffix], $"{name} exp_avg");
            AssertBitwiseEqual(OptimFixtures.Float32(values[2].GetString()!, shape), state[name + AdamW.ExpAvgSqSuffix], $"{name} exp_avg_sq");
        }
    }

    [Fact]
    public void TheNoDecayGroupGetsNoDecay()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(5);
        var values = Randn(generator, 6, 4);
        var norm = values.clone().requires_grad_(true);
        var bias = values.clone().requires_grad_(true);
        var lora = values.clone().requires_grad_(true);
        using var adamw = new AdamW(
            [("model.layers.2.post_attention_layernorm.weight", norm), ("model.layers.2.mlp.up_proj.bias", bias),
             ("model.layers.2.mlp.up_proj.lora_B.weight", lora)],
            new AdamWOptions { WeightDecay = 0.5 });
        Assert.Equal(["model.layers.2.mlp.up_proj.lora_B.weight"], adamw.DecayedParameterNames);
        Assert.Equal(0.0, adamw.WeightDecayOf("model.layers.2.mlp.up_proj.bias"));

        // Zero gradients make the Adam update exactly 0 (m = 0, so m_hat / (sqrt(v_hat) + eps) = 0): only decay is left.
        foreach (var p in new[] { norm, bias, lora }) p.grad = torch.zeros_like(p);
        adamw.Step(0.1);

        AssertBitwiseEqual(values, norm, "norm weight");
        AssertBitwiseEqual(values, bias, "bias");
        AssertBitwiseEqual(values * (float)(1 - 0.1 * 0.5), lora, "LoRA weight (decayed by 1 - lr * wd)");
    }

    [Fact]
    public void IsBitwiseRepeatable()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(3);
        var initial = Shapes.Select(s => Randn(generator, s)).ToArray();
        var grads = Enumerable.Range(0, 4).Select(_ => Shapes.Select(s => Randn(generator, s)).ToArray()).ToArray();

        Tensor[] Run()
        {
            var parameters = initial.Select(t => t.clone().requires_grad_(true)).ToArray();
            using var adamw = new AdamW(parameters.Select((p, i) => ($"model.layers.{i}.self_attn.o_proj.weight", p)));
            foreach (var stepGrads in grads)
            {
                for (int i = 0; i < parameters.Length; i++) parameters[i].grad = stepGrads[i].clone();
                adamw.Step(0.01);
            }
            return parameters;
        }

        var first = Run();
        var second = Run();
        for (int i = 0; i < first.Length; i++) AssertBitwiseEqual(first[i], second[i], $"run 2, parameter {i}");
    }

    [Fact]
    public void AMissingGradientIsAnErrorThatChangesNothing()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.ones(3).requires_grad_(true);
        var b = torch.ones(2).requires_grad_(true);
        using var adamw = new AdamW([("model.a.weight", a), ("model.b.weight", b)]);
        a.grad = torch.ones(3);

        var error = Assert.Throws<OptimizerStateException>(() => adamw.Step(0.1));
        Assert.Contains("'model.b.weight' has no gradient", error.Message);
        Assert.Equal(0, adamw.StepCount);
        AssertBitwiseEqual(torch.ones(3), a, "a after the failed step");
        using var state = new DisposableState(adamw.ExportState());
        AssertBitwiseEqual(torch.zeros(3), state["model.a.weight.exp_avg"], "a's exp_avg after the failed step");
    }

    [Fact]
    public void RejectsLowPrecisionParametersAndDuplicateNames()
    {
        using var scope = torch.NewDisposeScope();
        var bf16 = Assert.Throws<ArgumentException>(() => new AdamW([("model.norm.weight", torch.ones(2, ScalarType.BFloat16))]));
        Assert.Contains("model.norm.weight", bf16.Message);
        Assert.Contains("MasterWeights", bf16.Message);
        var twice = Assert.Throws<ArgumentException>(() => new AdamW([("x", torch.ones(2)), ("x", torch.ones(2))]));
        Assert.Contains("'x' is given twice", twice.Message);
    }

    [Fact]
    public void ZeroGradDropsTheGradients()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.ones(3).requires_grad_(true);
        using var adamw = new AdamW([("a", a)]);
        a.grad = torch.ones(3);
        adamw.ZeroGrad();
        Assert.Null(a.grad);
    }
}
