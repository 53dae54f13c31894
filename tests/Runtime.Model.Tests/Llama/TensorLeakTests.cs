using Runtime.Model.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

/// <summary>Forwards, losses and generation leave no live tensors behind (TorchSharp's per-thread count).</summary>
public class TensorLeakTests
{
    static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    [Theory]
    [InlineData(AttentionImplementation.Eager, ScalarType.Float32)]
    [InlineData(AttentionImplementation.ScaledDotProduct, ScalarType.BFloat16)]
    public void Repeated_forwards_losses_and_generations_leave_the_live_tensor_count_unchanged(
        AttentionImplementation attention, ScalarType dtype)
    {
        var config = MicroLlama.Config(tied: false);
        using var model = MicroLlama.Load(config, new LlamaModelOptions { DType = dtype, Attention = attention });
        using var head = MicroLlama.Load(config, new LlamaModelOptions { DType = dtype, Attention = attention },
            new LlamaSliceSpec(2, 3, false, true));
        var generator = new LlamaGenerator(model);
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(16, 1), MicroLlama.RandomTokens(16, 2));
        var positions = MicroLlama.Rows([.. Enumerable.Range(0, 6), .. Enumerable.Range(0, 10)], [.. Enumerable.Range(0, 16)]);
        var segments = MicroLlama.Rows([.. Enumerable.Repeat(0, 6), .. Enumerable.Repeat(1, 10)], [.. Enumerable.Repeat(0, 16)]);

        void Work()
        {
            using (var context = model.CreateContext(positions, segments))
            {
                var logits = model.call(tokens, context);
                var (sum, _) = CausalLmLoss.Compute(logits, tokens);
                sum.backward();
                sum.Dispose();
                logits.Dispose();
            }
            using (var logits = model.forward(tokens, positions))
            using (var scores = CausalLmLoss.TokenLogProbs(logits, tokens)) { }
            using (no_grad())
            using (var hidden = dtype == ScalarType.Float32 ? randn(2, 16, config.HiddenSize) : randn(2, 16, config.HiddenSize, dtype))
            using (var logits = head.forward(hidden, positions)) { }
            generator.Generate([3, 1, 4], new GenerationOptions { MaxNewTokens = 6, Temperature = 0.8, TopP = 0.9, EosTokenIds = [-1] });
            model.zero_grad();
        }

        Work(); // first use may create lasting state (gradients)
        long before = Live;
        for (int i = 0; i < 3; i++) Work();
        Assert.Equal(before, Live);

        // The count does see a leak: one forgotten tensor moves it.
        var leaked = model.forward(tokens, positions);
        Assert.Equal(before + 1, Live);
        leaked.Dispose();
    }
}
