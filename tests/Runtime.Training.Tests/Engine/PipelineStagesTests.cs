using Runtime.Model.Llama;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Tests.Engine;

/// <summary>Two pipeline stages driven by hand (hidden states forward, their gradients back) against the whole model.</summary>
[Collection(TorchTrainingCollection.Name)]
public class PipelineStagesTests
{
    const int Split = 2;

    /// <summary>
    /// 1F1B for 2 stages and 4 micro-batches, as one thread would interleave the two workers' schedules: stage 0 runs
    /// F0 F1 B0 F2 B1 F3 B2 B3 (two micro-batches in flight after warm-up), stage 1 runs F0 B0 F1 B1 F2 B2 F3 B3.
    /// </summary>
    static readonly (int Stage, char Op, int MicroBatch)[] OneFOneB =
    [
        (0, 'F', 0), (0, 'F', 1), (1, 'F', 0), (1, 'B', 0), (0, 'B', 0),
        (0, 'F', 2), (1, 'F', 1), (1, 'B', 1), (0, 'B', 1),
        (0, 'F', 3), (1, 'F', 2), (1, 'B', 2), (0, 'B', 2),
        (1, 'F', 3), (1, 'B', 3), (0, 'B', 3),
    ];

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void Two_stages_in_1F1B_give_the_whole_models_gradients(bool recomputeFirst, bool recomputeLast)
    {
        var config = MicroModel.Config();
        var layout = new BatchLayout(2, 4, 1);
        var batches = MicroModel.Batches(packed: true);
        var plan = batches.StepAt(layout.GlobalBatch, layout);
        long stepTokens = batches.LabelledTokens(plan);
        var microBatches = batches.ReplicaMicroBatches(plan, 0).ToList();

        // Reference: the whole model in one engine.
        Dictionary<string, double[]?> expected;
        double expectedLoss = 0;
        using (var whole = MicroModel.Create(config))
        using (var engine = new StageEngine(whole))
        {
            foreach (var mb in microBatches)
            {
                expectedLoss += engine.Forward(mb.Index, mb.InputIds, mb.Positions, mb.SegmentIds, mb.Labels,
                    new StepRandomness(1, 1, mb.Index), 1.0 / stepTokens).LossSum;
                engine.Backward(mb.Index);
            }
            expected = MicroModel.Gradients(engine.TrainableParameters);
        }

        using var firstSlice = MicroModel.Create(config, new LlamaSliceSpec(0, Split, HasEmbedding: true, HasHead: false));
        using var lastSlice = MicroModel.Create(config, new LlamaSliceSpec(Split, config.NumHiddenLayers, HasEmbedding: false, HasHead: true));
        using var first = new StageEngine(firstSlice, recomputeFirst);
        using var last = new StageEngine(lastSlice, recomputeLast);
        Assert.True(first.IsFirstStage && !first.IsLastStage && last.IsLastStage && !last.IsFirstStage);

        var sent = new Dictionary<int, Tensor>();          // hidden states stage 0 -> stage 1
        var returned = new Dictionary<int, Tensor>();      // their gradients stage 1 -> stage 0
        double loss = 0;
        int maxInFlight = 0;
        foreach (var (stage, op, j) in OneFOneB)
        {
            var mb = microBatches[j];
            var randomness = new StepRandomness(1, 1, mb.Index);
            if (stage == 0 && op == 'F')
            {
                var output = first.Forward(mb.Index, mb.InputIds, mb.Positions, mb.SegmentIds, randomness: randomness);
                Assert.Equal([mb.Rows, (long)mb.Width, config.HiddenSize], output.Output!.shape);
                sent[j] = output.Output;
                maxInFlight = Math.Max(maxInFlight, first.InFlight.Count);
            }
            else if (stage == 1 && op == 'F')
            {
                using var received = sent[j];
                sent.Remove(j);
                loss += last.Forward(mb.Index, received, mb.Positions, mb.SegmentIds, mb.Labels, randomness, 1.0 / stepTokens).LossSum;
            }
            else if (stage == 1)
            {
                returned[j] = last.Backward(mb.Index)!;
                Assert.Equal(ScalarType.Float32, returned[j].dtype);
            }
            else
            {
                using var gradient = returned[j];
                returned.Remove(j);
                Assert.Null(first.Backward(mb.Index, gradient));
            }
        }

        Assert.Equal(2, maxInFlight);
        Assert.Empty(first.InFlight);
        Assert.Empty(last.InFlight);
        Assert.True(Math.Abs(expectedLoss - loss) <= 1e-9 * Math.Abs(expectedLoss), $"loss sum {loss:R} vs {expectedLoss:R}");

        var actual = MicroModel.Gradients(first.TrainableParameters.Concat(last.TrainableParameters));
        MicroModel.AssertClose(expected, actual, 1e-6, "two stages vs whole model");
        foreach (var mb in microBatches) mb.Dispose();
    }

    [Fact]
    public void Misuse_is_refused_with_the_micro_batch_named()
    {
        var config = MicroModel.Config();
        using var firstSlice = MicroModel.Create(config, new LlamaSliceSpec(0, Split, true, false));
        using var first = new StageEngine(firstSlice);
        using var scope = NewDisposeScope();
        var ids = ones(2, 8, dtype: ScalarType.Int64);
        var positions = AttentionContext.SequentialPositions(2, 8);

        var output = first.Forward(7, ids, positions).Output!;
        var twice = Assert.Throws<InvalidOperationException>(() => first.Forward(7, ids, positions));
        Assert.Contains("micro-batch 7 is already in flight", twice.Message);
        var unknown = Assert.Throws<InvalidOperationException>(() => first.Backward(8, zeros_like(output)));
        Assert.Contains("micro-batch 8 is not in flight (in flight: 7)", unknown.Message);
        var noGradient = Assert.Throws<ArgumentException>(() => first.Backward(7));
        Assert.Contains("needs the gradient of its output [2, 8, 32]", noGradient.Message);
        var wrongShape = Assert.Throws<ArgumentException>(() => first.Backward(7, zeros(2, 7, 32)));
        Assert.Contains("the output gradient is [2, 7, 32]", wrongShape.Message);
        var hiddenIntoFirst = Assert.Throws<ArgumentException>(() => first.Forward(9, zeros(2, 8, 32), positions));
        Assert.Contains("takes token ids int64", hiddenIntoFirst.Message);

        Assert.True(first.Discard(7));
        Assert.Empty(first.InFlight);
    }
}
