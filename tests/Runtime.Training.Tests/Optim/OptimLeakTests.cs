using Runtime.Training.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Optim;

public class OptimLeakTests
{
    /// <summary>A long run's live tensor count must stay flat: a step, a clip and a master copy leave nothing behind.</summary>
    [Fact]
    public void StepsLeaveNoLiveTensorsBehind()
    {
        var weight = torch.ones([64, 8], ScalarType.BFloat16).requires_grad_(true).DetachFromDisposeScope();
        using var master = new MasterWeights([("model.layers.0.mlp.up_proj.weight", weight)]);
        using var adamw = new AdamW(master.Parameters);
        var parameters = master.Parameters.Select(p => p.Parameter).ToList();

        void OneStep()
        {
            using (var scope = torch.NewDisposeScope()) (weight * 0.5).sum().backward();
            master.AccumulateGradients();
            GradientClipper.ClipByGlobalNorm(parameters, 1.0);
            adamw.Step(0.01);
            master.CopyToModel();
            master.ZeroGrad();
        }

        OneStep();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++) OneStep();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        weight.Dispose();
    }
}
