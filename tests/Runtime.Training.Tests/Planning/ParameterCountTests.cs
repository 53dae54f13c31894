using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

/// <summary>
/// Parameter counts of every preset, recomputed here by walking the safetensors weight list of llama-hf.md
/// (name by name, shape by shape) from the architecture numbers, which is a different route than LlamaConfig's formula.
/// </summary>
public class ParameterCountTests
{
    // (preset, hidden, intermediate, layers, heads, kv heads, head_dim, vocab, tied)
    public static TheoryData<string, int, int, int, int, int, int, int, bool> Architectures => new()
    {
        { "llama3.1-8b", 4096, 14336, 32, 32, 8, 128, 128256, false },
        { "llama3.1-70b", 8192, 28672, 80, 64, 8, 128, 128256, false },
        { "llama3.1-405b", 16384, 53248, 126, 128, 8, 128, 128256, false },
        // Llama 3.2 (published config.json): 1B hidden 2048, 16 layers, 32/8 heads of 64; 3B hidden 3072, 28 layers, 24/8 heads of 128.
        { "llama3.2-1b", 2048, 8192, 16, 32, 8, 64, 128256, true },
        { "llama3.2-3b", 3072, 8192, 28, 24, 8, 128, 128256, true },
        { "tiny", 64, 192, 4, 4, 2, 16, 128256, true },
        { "small", 768, 2048, 12, 12, 4, 64, 128256, true },
    };

    static long CountFromWeightList(int hidden, int inter, int layers, int heads, int kv, int headDim, int vocab, bool tied)
    {
        var shapes = new List<long[]> { new long[] { vocab, hidden } };      // model.embed_tokens.weight
        for (int i = 0; i < layers; i++)
        {
            shapes.Add([hidden]);                                            // input_layernorm
            shapes.Add([heads * headDim, hidden]);                           // q_proj
            shapes.Add([kv * headDim, hidden]);                              // k_proj
            shapes.Add([kv * headDim, hidden]);                              // v_proj
            shapes.Add([hidden, heads * headDim]);                           // o_proj
            shapes.Add([hidden]);                                            // post_attention_layernorm
            shapes.Add([inter, hidden]);                                     // gate_proj
            shapes.Add([inter, hidden]);                                     // up_proj
            shapes.Add([hidden, inter]);                                     // down_proj
        }
        shapes.Add([hidden]);                                                // model.norm
        if (!tied) shapes.Add([vocab, hidden]);                              // lm_head
        return shapes.Sum(s => s.Aggregate(1L, (a, b) => a * b));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Plan_counts_every_preset_exactly(string preset, int hidden, int inter, int layers, int heads, int kv, int headDim, int vocab, bool tied)
    {
        var expected = CountFromWeightList(hidden, inter, layers, heads, kv, headDim, vocab, tied);
        var request = new PlanRequest
        {
            Model = LlamaPresets.Get(preset), ModelName = preset, Method = FineTuneMethod.Full,
            Gpu = GpuCatalog.Get("b200"), Tp = 1, Pp = 1, Dp = 1,
        };
        var plan = MemoryPlanner.Plan(request);
        Assert.Equal(expected, plan.Parameters);
        Assert.Equal(expected, plan.TrainableParameters);
        // A single-GPU full fine-tune stores every parameter once as a trained weight.
        Assert.Equal(expected, plan.Chosen.Peak.TrainableParametersPerGpu);
    }

    [Fact]
    public void Published_totals_match()
    {
        // The totals Meta/Hugging Face publish for the 3.1 family (8.03B, 70.55B, 405.85B).
        Assert.Equal(8_030_261_248, LlamaPresets.Llama31_8B.ParameterCount);
        Assert.Equal(70_553_706_496, LlamaPresets.Llama31_70B.ParameterCount);
        Assert.Equal(405_853_388_800, LlamaPresets.Llama31_405B.ParameterCount);
        Assert.InRange(LlamaPresets.Llama31_405B.ParameterCount * 2 / 1e9, 811.7, 811.71); // bf16 weights, GB
    }

    [Fact]
    public void Lora_trainable_parameters_are_rank_times_in_plus_out_per_target()
    {
        // 405B, r = 16 on q, v: per layer 16 * ((16384 + 16384) + (16384 + 1024)); 126 layers.
        var request = new PlanRequest
        {
            Model = LlamaPresets.Llama31_405B, Method = FineTuneMethod.Lora, Lora = new LoraSettings(16, ["q_proj", "v_proj"]),
            Gpu = GpuCatalog.Get("b200"), Tp = 8, Pp = 1, Dp = 1,
        };
        Assert.Equal(126L * 16 * (32768 + 17408), MemoryPlanner.Plan(request).TrainableParameters);
    }
}
