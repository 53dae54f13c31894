using Runtime.Training.Data;

namespace Runtime.Training.Engine;

/// <summary>
/// The two parts of the data pipeline a training loop needs: the global sampler (which examples a step holds; its
/// state is one position) and the collator (examples to tensors). <see cref="From(TrainingData)"/> takes them from an
/// opened data file; <see cref="InMemory"/> builds them over examples held in memory, for tests and benchmarks whose
/// micro models have no Llama 3 tokenizer (and no room for its pad id in their vocabulary).
/// </summary>
public sealed class TrainingBatches(GlobalSampler sampler, MicroBatchCollator collator)
{
    public GlobalSampler Sampler { get; } = sampler;

    public MicroBatchCollator Collator { get; } = collator;

    public static TrainingBatches From(TrainingData data) => new(data.Sampler, data.Collator);

    public static TrainingBatches InMemory(IExampleSet examples, SamplerOptions sampler, int padId, int padToMultipleOf = 8) =>
        new(new GlobalSampler(examples, sampler), new MicroBatchCollator(examples, padId, padToMultipleOf));

    /// <summary>The step that starts at global position <paramref name="position"/> (a resumed run's saved position).</summary>
    public StepPlan StepAt(long position, BatchLayout layout) => Sampler.StepAt(position, layout);

    /// <summary>Labelled tokens of the whole step, over every replica: the loss normaliser, known before the forward.</summary>
    public long LabelledTokens(StepPlan step) => Collator.LabelledTokens(step);

    /// <summary>Replica <paramref name="replica"/>'s micro-batches of the step, collated one at a time as enumerated.</summary>
    public IEnumerable<MicroBatch> ReplicaMicroBatches(StepPlan step, int replica) =>
        step.ForReplica(replica).Select(Collator.Collate);
}
