using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

/// <summary>A Llama small enough to count by hand: h 8, f 16, 2 heads (1 kv head unless asked) of 4, vocab 32, untied unless asked.</summary>
static class ToyModel
{
    public static LlamaConfig Config(int layers = 1, bool tied = false, int kvHeads = 1) => new()
    {
        HiddenSize = 8, IntermediateSize = 16, NumHiddenLayers = layers, NumAttentionHeads = 2, NumKeyValueHeads = kvHeads,
        HeadDim = 4, VocabSize = 32, TieWordEmbeddings = tied,
    };

    /// <summary>Only the categories under test: reserve = 5% + 1000 bytes, a GPU of 1 MB.</summary>
    public static PlanRequest Request(FineTuneMethod method, int layers = 1, bool tied = false, int kvHeads = 1) => new()
    {
        Model = Config(layers, tied, kvHeads), ModelName = "toy", Method = method,
        Lora = new LoraSettings(2, LinearModule.AllNames),
        MicroBatchSize = 2, SequenceLength = 3,
        Gpu = new GpuSpec("toy", "toy GPU", 1_000_000, 8, "test"),
        Reserve = new ReservePolicy(0.05, 1000),
        Tp = 1, Pp = 1, Dp = 1,
    };
}
