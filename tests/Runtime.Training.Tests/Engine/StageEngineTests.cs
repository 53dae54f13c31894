using Runtime.Model.Llama;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

[Collection(TorchTrainingCollection.Name)]
public class StageEngineTests
{
    /// <summary>
    /// Runs every micro-batch of one step through a whole-model engine (forward, then backward at once) and returns the
    /// accumulated gradients and the step's loss (sum over micro-batches / step tokens).
    /// </summary>
    static (Dictionary<string, double[]?> Grads, double Loss) OneStep(LlamaSlice model, TrainingBatches batches, BatchLayout layout,
        bool recompute, long step = 0)
    {
        using var engine = new StageEngine(model, recompute);
        var plan = batches.StepAt(step * layout.GlobalBatch, layout);
        long stepTokens = batches.LabelledTokens(plan);
        double lossSum = 0;
        long counted = 0;
        foreach (var mb in batches.ReplicaMicroBatches(plan, 0))
        {
            using (mb)
            {
                var result = engine.Forward(mb.Index, mb.InputIds, mb.Positions, mb.SegmentIds, mb.Labels,
                    new StepRandomness(1, step, mb.Index), 1.0 / stepTokens);
                Assert.Null(result.Output);
                Assert.Equal(mb.LabelledTokens, result.LabelledTokens);
                lossSum += result.LossSum;
                counted += result.LabelledTokens;
                Assert.Null(engine.Backward(mb.Index));
            }
        }
        Assert.Equal(stepTokens, counted);
        Assert.Empty(engine.InFlight);
        var grads = MicroModel.Gradients(engine.TrainableParameters);
        model.zero_grad();
        return (grads, lossSum / stepTokens);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Recompute_gives_the_same_gradients_as_keeping_the_graph(bool tied, bool packed)
    {
        var config = MicroModel.Config(tied);
        using var model = MicroModel.Create(config);
        var batches = MicroModel.Batches(packed: packed);
        var layout = new BatchLayout(2, 3, 1);

        var (kept, keptLoss) = OneStep(model, batches, layout, recompute: false);
        var (recomputed, recomputedLoss) = OneStep(model, batches, layout, recompute: true);

        Assert.Equal(keptLoss, recomputedLoss);
        Assert.Equal(config.TieWordEmbeddings ? 2 + 9 * 3 : 3 + 9 * 3, kept.Count);
        // Untied, every parameter receives its gradient through the same kernels in the same order: bitwise. Tied, the
        // table's two contributions (head and embedding) are summed in another order: fp32 rounding.
        MicroModel.AssertClose(kept, recomputed, tied ? 1e-6 : 0, "recompute vs graph");
        Assert.Contains(kept.Values, g => g!.Any(v => v != 0));
    }

    [Fact]
    public void Only_parameters_that_require_grad_train_and_recompute_still_matches()
    {
        // As under a LoRA injector: the base is frozen (embedding and head included), a few tensors train.
        var config = MicroModel.Config();
        using var model = MicroModel.Create(config);
        string[] trained = ["model.layers.0.self_attn.q_proj.weight", "model.layers.2.mlp.down_proj.weight", "model.norm.weight"];
        foreach (var (name, parameter) in model.named_parameters()) parameter.requires_grad_(trained.Contains(name));
        var batches = MicroModel.Batches();
        var layout = new BatchLayout(2, 2, 1);

        var (kept, _) = OneStep(model, batches, layout, recompute: false);
        var (recomputed, _) = OneStep(model, batches, layout, recompute: true);

        Assert.Equal(trained.Order(), kept.Keys.Order());
        MicroModel.AssertClose(kept, recomputed, 0, "frozen base: recompute vs graph");
        Assert.All(model.named_parameters().Where(p => !trained.Contains(p.name)), p => Assert.Null(p.parameter.grad));
    }

    [Fact]
    public void Gradients_are_those_of_the_mean_loss_over_the_step_computed_in_one_plain_backward()
    {
        // Reference written differently: every micro-batch's logits through the slice, one loss = (sum of all token
        // NLLs) / (step tokens), one backward. The engine scales and accumulates per micro-batch instead.
        var config = MicroModel.Config();
        using var model = MicroModel.Create(config);
        var batches = MicroModel.Batches();
        var layout = new BatchLayout(2, 3, 1);
        var (engineGrads, engineLoss) = OneStep(model, batches, layout, recompute: true);

        double referenceLoss;
        using (var scope = NewDisposeScope())
        {
            var plan = batches.StepAt(0, layout);
            var sums = new List<Tensor>();
            long tokens = 0;
            foreach (var mb in batches.ReplicaMicroBatches(plan, 0))
            {
                var logits = model.forward(mb.InputIds, mb.Positions, mb.SegmentIds);
                sums.Add(CausalLmLoss.SumNll(logits, mb.Labels));
                tokens += CausalLmLoss.CountLabelled(mb.Labels);
            }
            var loss = stack(sums).sum() / tokens;
            loss.backward();
            referenceLoss = loss.ToDouble();
        }
        var referenceGrads = MicroModel.Gradients(model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
        model.zero_grad();

        Assert.True(Math.Abs(referenceLoss - engineLoss) <= 1e-6, $"loss {engineLoss:R} vs {referenceLoss:R}");
        MicroModel.AssertClose(referenceGrads, engineGrads, 1e-6, "engine vs one plain backward");
    }

    [Fact]
    public void Accumulating_four_micro_batches_equals_one_batch_four_times_larger()
    {
        var config = MicroModel.Config();
        using var model = MicroModel.Create(config);
        var batches = MicroModel.Batches();

        // Same global batch and sampler, so the same 8 examples in the same order: 4 x 2 rows, or 1 x 8 rows (padded
        // to the longest of the 8, so also a different width).
        var (accumulated, accumulatedLoss) = OneStep(model, batches, new BatchLayout(2, 4, 1), recompute: false, step: 1);
        var (whole, wholeLoss) = OneStep(model, batches, new BatchLayout(8, 1, 1), recompute: false, step: 1);

        Assert.True(Math.Abs(accumulatedLoss - wholeLoss) <= 1e-6, $"loss {accumulatedLoss:R} vs {wholeLoss:R}");
        MicroModel.AssertClose(whole, accumulated, 1e-6, "4 micro-batches vs one batch");
    }
}
