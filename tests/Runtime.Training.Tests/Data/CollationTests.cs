using Runtime.Model.Tests.Tokenization;
using Runtime.Training.Data;
using TorchSharp;

namespace Runtime.Training.Tests.Data;

public sealed class CollationTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>, IDisposable
{
    const long Pad = 128004, Ignore = -100;
    readonly DataTempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void Unpacked_examples_are_right_padded_to_a_multiple_of_8_with_ignored_labels()
    {
        var source = InMemorySamples.OfLengths(64, 3, 10, 5);
        var collator = new MicroBatchCollator(new SampleExamples(source));
        using var batch = collator.Collate([2, 0, 1], index: 5);

        Assert.Equal(5, batch.Index);
        Assert.Equal([2, 0, 1], batch.Examples);
        Assert.Equal(new long[] { 3, 16 }, batch.InputIds.shape);
        Assert.Equal(torch.ScalarType.Int64, batch.InputIds.dtype);
        Assert.Null(batch.SegmentIds);
        var ids = batch.InputIds.data<long>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        var positions = batch.Positions.data<long>().ToArray();
        // Row 0 is sample 2 (ids 2000..2004), then 11 pads.
        Assert.Equal([2000, 2001, 2002, 2003, 2004, .. Enumerable.Repeat(Pad, 11)], ids[..16]);
        Assert.Equal([Ignore, 2001, 2002, 2003, 2004, .. Enumerable.Repeat(Ignore, 11)], labels[..16]);
        Assert.Equal(Enumerable.Range(0, 5).Concat(Enumerable.Range(0, 11)).Select(i => (long)i), positions[..16]);
        Assert.Equal([1000L, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, Pad, Pad, Pad, Pad, Pad, Pad], ids[32..]);
        Assert.Equal(4 + 2 + 9, batch.LabelledTokens);
        Assert.Equal(labels.Count(l => l != Ignore), batch.LabelledTokens);
    }

    [Fact]
    public void Padding_never_exceeds_max_seq_length_and_can_be_exact()
    {
        var source = InMemorySamples.OfLengths(12, 11, 4);
        Assert.Equal(12, new MicroBatchCollator(new SampleExamples(source)).Width([0, 1])); // 16 would pass max
        Assert.Equal(11, new MicroBatchCollator(new SampleExamples(source), padToMultipleOf: 1).Width([0, 1]));
        Assert.Equal(8, new MicroBatchCollator(new SampleExamples(source)).Width([1]));
    }

    [Fact]
    public void Collation_is_deterministic()
    {
        var source = InMemorySamples.OfLengths(16, 7, 9, 2);
        var collator = new MicroBatchCollator(new PackedExamples(source));
        using var a = collator.Collate([0, 1]);
        using var b = collator.Collate([0, 1]);
        Assert.Equal(a.InputIds.data<long>().ToArray(), b.InputIds.data<long>().ToArray());
        Assert.Equal(a.Labels.data<long>().ToArray(), b.Labels.data<long>().ToArray());
        Assert.Equal(a.Positions.data<long>().ToArray(), b.Positions.data<long>().ToArray());
        Assert.Equal(a.SegmentIds!.data<long>().ToArray(), b.SegmentIds!.data<long>().ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_steps_labelled_tokens_equal_the_sum_over_its_micro_batches_on_every_layout(bool packing)
    {
        var rows = Enumerable.Range(0, 60).Select(i => i % 3 == 0
            ? $$"""{"instruction": "Count to {{i % 7 + 1}}.", "output": "{{string.Join(", ", Enumerable.Range(1, i % 7 + 1))}}"}"""
            : $$"""{"messages": [{"role": "user", "content": "Say {{i}}."}, {"role": "assistant", "content": "{{i}}"}]}""").ToArray();
        var data = _folder.WriteJsonl("chat.jsonl", rows);
        var options = new TrainingDataOptions(new DataOptions(128), new SamplerOptions(3)) { Packing = packing };
        using var training = TrainingData.Open(data, fixture.Tokenizer, options);

        foreach (var layout in new[] { new BatchLayout(2, 4, 1), new BatchLayout(2, 2, 2), new BatchLayout(2, 1, 4) })
        {
            for (long k = 0; k < 3; k++)
            {
                var step = training.Step(k, layout);
                long expected = training.LabelledTokens(step);
                long counted = 0, fromLabels = 0;
                for (int d = 0; d < layout.DataParallel; d++)
                {
                    foreach (var batch in training.ReplicaMicroBatches(step, d))
                    {
                        using (batch)
                        using (torch.NewDisposeScope())
                        {
                            counted += batch.LabelledTokens;
                            fromLabels += batch.Labels.ne(Ignore).sum().item<long>();
                        }
                    }
                }
                Assert.True(expected > 0);
                Assert.Equal(expected, counted);
                Assert.Equal(expected, fromLabels);
            }
        }
    }
}
