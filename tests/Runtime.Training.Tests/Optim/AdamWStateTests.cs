using Runtime.Training.Optim;
using TorchSharp;
using static Runtime.Training.Tests.Optim.OptimTestTensors;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class AdamWStateTests
{
    private static readonly (string Name, long[] Shape)[] Layout =
    [
        ("model.layers.3.self_attn.q_proj.lora_A.weight", [4, 12]),
        ("model.layers.3.self_attn.q_proj.lora_B.weight", [12, 4]),
        ("model.layers.3.input_layernorm.weight", [12]),
    ];

    private static Tensor[] Initial(Generator generator) => Layout.Select(l => Randn(generator, l.Shape)).ToArray();

    private static AdamW Optimizer(Tensor[] parameters) =>
        new(Layout.Select((l, i) => (l.Name, parameters[i])));

    private static void Steps(AdamW adamw, Tensor[] parameters, Tensor[][] grads, LrSchedule schedule, int from, int count)
    {
        for (int step = from; step < from + count; step++)
        {
            for (int i = 0; i < parameters.Length; i++) parameters[i].grad = grads[step][i].clone();
            adamw.Step(schedule);
        }
    }

    [Fact]
    public void ExportAndImportContinueBitForBit()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(21);
        var initial = Initial(generator);
        var grads = Enumerable.Range(0, 6).Select(_ => Layout.Select(l => Randn(generator, l.Shape)).ToArray()).ToArray();
        var schedule = new LrSchedule(LrScheduleKind.Cosine, 1e-2, totalSteps: 6, warmupSteps: 1);

        var straight = initial.Select(t => t.clone().requires_grad_(true)).ToArray();
        using (var adamw = Optimizer(straight)) Steps(adamw, straight, grads, schedule, 0, 6);

        var resumed = initial.Select(t => t.clone().requires_grad_(true)).ToArray();
        Dictionary<string, Tensor> saved;
        using (var first = Optimizer(resumed))
        {
            Steps(first, resumed, grads, schedule, 0, 3);
            saved = first.ExportState();
        }
        // A new optimizer as after a restart: the weights come back from the checkpoint, the state from the export.
        var reloaded = resumed.Select(t => t.detach().clone().requires_grad_(true)).ToArray();
        using var second = Optimizer(reloaded);
        second.ImportState(saved);
        Assert.Equal(3, second.StepCount);
        Steps(second, reloaded, grads, schedule, 3, 3);

        for (int i = 0; i < Layout.Length; i++) AssertBitwiseEqual(straight[i], reloaded[i], $"{Layout[i].Name} after 3 + 3 steps");
        // The schedule's warmup step ran at lr 0 and the others did not: the continuation really depended on the state.
        Assert.False(straight[0].eq(initial[0]).all().item<bool>());
    }

    [Fact]
    public void ExportsCanonicalNamesShapesAndTheStep()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = Initial(new Generator(1)).Select(t => t.requires_grad_(true)).ToArray();
        using var adamw = Optimizer(parameters);
        foreach (var p in parameters) p.grad = torch.ones_like(p);
        adamw.Step(0.1);
        adamw.Step(0.1);

        using var state = new DisposableState(adamw.ExportState());
        var expectedNames = Layout.SelectMany(l => new[] { l.Name + ".exp_avg", l.Name + ".exp_avg_sq" }).Append("optimizer.step");
        Assert.Equal(expectedNames.Order(StringComparer.Ordinal), state.Tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, shape) in Layout)
        {
            Assert.Equal(shape, state[name + ".exp_avg"].shape);
            Assert.Equal(ScalarType.Float32, state[name + ".exp_avg_sq"].dtype);
        }
        Assert.Equal(ScalarType.Int64, state["optimizer.step"].dtype);
        Assert.Equal(0, state["optimizer.step"].dim());
        Assert.Equal(2L, state["optimizer.step"].item<long>());
        // Gradient 1 everywhere: exp_avg = 1 - 0.9^2 = 0.19 after two steps.
        AssertClose(Enumerable.Repeat(0.19, 48).ToArray(), Doubles(state[Layout[0].Name + ".exp_avg"]), 1e-6, 0, "exp_avg");
    }

    [Fact]
    public void ExportedTensorsAreCopies()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = Initial(new Generator(2)).Select(t => t.requires_grad_(true)).ToArray();
        using var adamw = Optimizer(parameters);
        foreach (var p in parameters) p.grad = torch.ones_like(p);
        adamw.Step(0.1);
        using (var first = new DisposableState(adamw.ExportState()))
            first[Layout[0].Name + ".exp_avg"].fill_(42f);
        using var second = new DisposableState(adamw.ExportState());
        Assert.Equal(0.1f, second[Layout[0].Name + ".exp_avg"].max().item<float>(), 6);
    }

    [Fact]
    public void ImportReportsMissingMisshapenAndUnexpectedTensorsAndChangesNothing()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = Initial(new Generator(3)).Select(t => t.requires_grad_(true)).ToArray();
        using var adamw = Optimizer(parameters);
        using var good = new DisposableState(adamw.ExportState());

        var bad = new Dictionary<string, Tensor>(good.Tensors);
        bad.Remove(Layout[1].Name + ".exp_avg_sq");
        bad[Layout[0].Name + ".exp_avg"] = torch.ones(12, 4);
        bad[Layout[2].Name + ".exp_avg"] = torch.ones([12], ScalarType.Float64);
        bad["model.layers.4.mlp.up_proj.lora_A.weight.exp_avg"] = torch.ones(3);
        bad["optimizer.step"] = torch.tensor(5L);

        var error = Assert.Throws<OptimizerStateException>(() => adamw.ImportState(bad));
        Assert.Contains($"'{Layout[1].Name}.exp_avg_sq' is missing", error.Message);
        Assert.Contains($"'{Layout[0].Name}.exp_avg' has shape [12, 4], parameter '{Layout[0].Name}' has shape [4, 12]", error.Message);
        Assert.Contains($"'{Layout[2].Name}.exp_avg' is Float64, expected Float32", error.Message);
        Assert.Contains("'model.layers.4.mlp.up_proj.lora_A.weight.exp_avg' is not state of any parameter", error.Message);
        Assert.Equal(0, adamw.StepCount);
        using var after = new DisposableState(adamw.ExportState());
        AssertBitwiseEqual(torch.zeros(4, 12), after[Layout[0].Name + ".exp_avg"], "exp_avg after the failed import");
    }

    [Fact]
    public void ImportChecksTheStepAndCanIgnoreOtherWorkersState()
    {
        using var scope = torch.NewDisposeScope();
        var parameters = Initial(new Generator(4)).Select(t => t.requires_grad_(true)).ToArray();
        using var adamw = Optimizer(parameters);
        using var good = new DisposableState(adamw.ExportState());

        var noStep = new Dictionary<string, Tensor>(good.Tensors);
        noStep.Remove("optimizer.step");
        Assert.Contains("'optimizer.step' is missing", Assert.Throws<OptimizerStateException>(() => adamw.ImportState(noStep)).Message);
        var fractional = new Dictionary<string, Tensor>(good.Tensors) { ["optimizer.step"] = torch.tensor(2.5f) };
        Assert.Contains("'optimizer.step' is 2.5", Assert.Throws<OptimizerStateException>(() => adamw.ImportState(fractional)).Message);

        // A full-model state dictionary holds other workers' tensors too; PyTorch stores the step as a float.
        var superset = new Dictionary<string, Tensor>(good.Tensors)
        {
            ["model.layers.9.self_attn.q_proj.lora_A.weight.exp_avg"] = torch.ones(3),
            ["optimizer.step"] = torch.tensor(7f),
        };
        Assert.Throws<OptimizerStateException>(() => adamw.ImportState(superset));
        adamw.ImportState(superset, ignoreUnexpected: true);
        Assert.Equal(7, adamw.StepCount);
    }
}
