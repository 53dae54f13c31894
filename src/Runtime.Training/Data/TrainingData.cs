using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>Everything that decides what a run trains on, from the data file to the micro-batches.</summary>
public sealed record TrainingDataOptions(DataOptions Data, SamplerOptions Sampler)
{
    /// <summary>Pack samples into rows of max-seq-length (<see cref="PackingPlan"/>); else one sample per example.</summary>
    public bool Packing { get; init; }

    /// <summary>Where the token cache goes when not beside the data file (e.g. a read-only data folder).</summary>
    public string? CacheFolder { get; init; }

    /// <summary>Unpacked micro-batches are padded to a multiple of this (1: to the longest example exactly).</summary>
    public int PadToMultipleOf { get; init; } = 8;
}

/// <summary>
/// The data pipeline of one run, as each data-loader opens it: the token cache (built by the first opener, mapped by
/// all), the examples (packed or not), the global sampler and the collator. Every part is a pure function of the data
/// file, the tokenizer and <see cref="TrainingDataOptions"/>, so all replicas agree without talking to each other.
/// </summary>
public sealed class TrainingData : IDisposable
{
    TrainingData(TokenCache cache, IExampleSet examples, GlobalSampler sampler, MicroBatchCollator collator)
    {
        Cache = cache;
        Examples = examples;
        Sampler = sampler;
        Collator = collator;
    }

    public TokenCache Cache { get; }

    public IExampleSet Examples { get; }

    public GlobalSampler Sampler { get; }

    public MicroBatchCollator Collator { get; }

    public static TrainingData Open(string dataPath, Llama3Tokenizer tokenizer, TrainingDataOptions options)
    {
        var cache = TokenCache.OpenOrBuild(dataPath, tokenizer, options.Data, options.CacheFolder);
        try
        {
            IExampleSet examples = options.Packing ? new PackedExamples(cache) : new SampleExamples(cache);
            return new TrainingData(cache, examples, new GlobalSampler(examples, options.Sampler),
                new MicroBatchCollator(examples, tokenizer.FinetuneRightPad, options.PadToMultipleOf));
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    public StepPlan Step(long step, BatchLayout layout) => Sampler.Step(step, layout);

    public StepPlan StepAt(long startPosition, BatchLayout layout) => Sampler.StepAt(startPosition, layout);

    /// <summary>Labelled tokens of the whole step, over every replica: the loss normaliser, known before the forward.</summary>
    public long LabelledTokens(StepPlan step) => Collator.LabelledTokens(step);

    /// <summary>Replica <paramref name="replica"/>'s micro-batches of the step, collated one at a time as enumerated.</summary>
    public IEnumerable<MicroBatch> ReplicaMicroBatches(StepPlan step, int replica) =>
        step.ForReplica(replica).Select(Collator.Collate);

    public long TotalSteps(double epochs, BatchLayout layout) => GlobalSampler.TotalSteps(Examples.Count, epochs, layout);

    public void Dispose() => Cache.Dispose();
}
