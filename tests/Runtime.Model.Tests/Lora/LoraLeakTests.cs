using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>Training steps through adapters, dropout and 4-bit bases leave no live tensors behind.</summary>
public sealed class LoraLeakTests
{
    static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    [Theory]
    [InlineData(ProjectionBase.Dense, ScalarType.Float32)]
    [InlineData(ProjectionBase.Nf4, ScalarType.BFloat16)]
    public void Forward_and_backward_with_dropout_keep_the_live_tensor_count(ProjectionBase projectionBase, ScalarType dtype)
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config, new LlamaModelOptions { DType = dtype, ProjectionBase = projectionBase });
        LoraInjector.Inject(model, new LoraConfig(4, 8, 0.1, LoraConfig.AllTargets), seed: 1);
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(12, 1), MicroLlama.RandomTokens(12, 2));
        var positions = AttentionContext.SequentialPositions(2, 12);

        void Step(int microBatch)
        {
            using (var context = model.CreateContext(positions, randomness: new StepRandomness(1, 1, microBatch)))
            {
                var logits = model.call(tokens, context);
                var (sum, _) = CausalLmLoss.Compute(logits, tokens);
                sum.backward();
                sum.Dispose();
                logits.Dispose();
            }
            using (no_grad())
            using (var logits = model.forward(tokens, positions)) { }
            model.zero_grad();
        }

        Step(0); // the first backward creates the adapters' gradients
        long before = Live;
        for (int i = 1; i < 4; i++) Step(i);
        Assert.Equal(before, Live);
    }
}
