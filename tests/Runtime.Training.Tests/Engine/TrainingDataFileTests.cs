using Runtime.Model.Tests.Tokenization;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using Runtime.Training.Tests.Data;

namespace Runtime.Training.Tests.Engine;

/// <summary>The loop fed from a data file through <see cref="TrainingData"/> (token cache, sampler, collator).</summary>
[Collection(TorchTrainingCollection.Name)]
public sealed class TrainingDataFileTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>, IDisposable
{
    readonly DataTempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Pre_tokenized_rows_from_a_file_train_exactly_as_the_same_samples_held_in_memory()
    {
        // Rows of 16 ids (no padding, so the Llama 3 pad id never reaches the micro model's 256-token vocabulary).
        var samples = Enumerable.Range(0, 24).Select(s => Enumerable.Range(0, 16).Select(i => 1 + (7 * s + i) % 255).ToArray()).ToArray();
        var path = _temp.WriteJsonl("rows.jsonl", samples.Select(ids => $"{{\"input_ids\": [{string.Join(", ", ids)}]}}").ToArray());
        var sampler = new SamplerOptions(3);
        var options = new TrainingLoopOptions
        {
            Layout = new BatchLayout(2, 2, 1), Schedule = new LrSchedule(LrScheduleKind.Linear, 1e-2, 3, 0), Seed = 5, MaxSteps = 3,
        };

        using var data = TrainingData.Open(path, fixture.Tokenizer, new TrainingDataOptions(new DataOptions(16), sampler));
        IReadOnlyList<StepRecord> fromFile, fromMemory;
        using (var model = MicroModel.Create(MicroModel.Config(layers: 1)))
        using (var loop = new TrainingLoop(model, TrainingBatches.From(data), options))
            fromFile = loop.Run();

        // Pre-tokenized rows learn every token; the collator leaves out the first, which nothing predicts.
        var inMemory = new InMemorySamples(16, samples.Select(ids => (ids, Enumerable.Repeat((byte)1, ids.Length).ToArray())).ToArray());
        using (var model = MicroModel.Create(MicroModel.Config(layers: 1)))
        using (var loop = new TrainingLoop(model, TrainingBatches.InMemory(new SampleExamples(inMemory), sampler, padId: 0), options))
            fromMemory = loop.Run();

        Assert.Equal(Enumerable.Repeat(4L * 15, 3), fromFile.Select(r => r.LabelledTokens));
        Assert.Equal(fromMemory.Select(r => (r.Loss, r.GradNorm)), fromFile.Select(r => (r.Loss, r.GradNorm)));
    }
}
