using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

/// <summary>
/// The per-layer activation model against what PyTorch's autograd actually kept. Reference values were measured with
/// torch 2.11 on an H100 and an H200 (identical on both): one Llama 3.1 8B-shaped decoder layer written as
/// transformers writes it (fp32 RMSNorm, rotary, repeated kv, SDPA flash or eager softmax, SwiGLU, PEFT-style fp32
/// LoRA r16 casting its input), bf16, micro-batch 1 x 4096 tokens (eager: 1024), summing the distinct storages that
/// torch.autograd.graph.saved_tensors_hooks received, parameters, x and the shared cos/sin excluded.
/// </summary>
public class ActivationModelTests
{
    static ActivationModel Model8B(FineTuneMethod method, IReadOnlyList<string>? targets = null, AttentionKernel attention = AttentionKernel.Fused, int seq = 4096) =>
        new(new PlanRequest
        {
            Model = LlamaPresets.Llama31_8B, Method = method, Lora = new LoraSettings(16, targets ?? LinearModule.AllNames),
            SequenceLength = seq, Attention = attention, Gpu = GpuCatalog.Get("h100-80"),
        }, tp: 1);

    [Fact]
    public void Full_fine_tuning_layer_matches_torch() =>
        Assert.Equal(213_128, Model8B(FineTuneMethod.Full).Layer.BytesPerToken);

    [Fact]
    public void Lora_on_all_projections_matches_torch() =>
        Assert.Equal(307_784, Model8B(FineTuneMethod.Lora).Layer.BytesPerToken);

    [Fact]
    public void Lora_on_q_and_v_matches_torch() =>
        Assert.Equal(184_584, Model8B(FineTuneMethod.Lora, ["q_proj", "v_proj"]).Layer.BytesPerToken);

    [Fact]
    public void Frozen_layer_matches_torch() =>
        // No adapters at all: what a frozen layer keeps so that gradients can flow through it.
        Assert.Equal(151_688, Model8B(FineTuneMethod.Lora, []).Layer.BytesPerToken);

    [Fact]
    public void Eager_attention_layer_matches_torch() =>
        Assert.Equal(409_608, Model8B(FineTuneMethod.Full, attention: AttentionKernel.Eager, seq: 1024).Layer.BytesPerToken);

    [Fact]
    public void Backward_transient_matches_the_measured_peak_over_saved()
    {
        // Full layer: peak during forward+backward minus saved = 110,592 B/token, of which the layer's output and its
        // incoming gradient are 2 x 2h = 16,384; the rest is what one layer's backward holds.
        Assert.Equal(110_592 - 2 * 2 * 4096, Model8B(FineTuneMethod.Full).BackwardTransient.BytesPerToken);
    }

    [Fact]
    public void Loss_peak_is_twelve_bytes_per_vocabulary_entry()
    {
        // Measured: cross-entropy on fp32 logits [4096, 128256] kept 4.0 B/token/vocab and peaked at 11.94.
        var m = Model8B(FineTuneMethod.Lora);
        long vocab = 128_256;
        long headFp32 = m.HeadSaved.Terms.Single(t => t.Name == "fp32 log-probabilities").BytesPerToken;
        Assert.Equal(4 * vocab, headFp32);
        Assert.Equal(12 * vocab, headFp32 + m.HeadTransient.BytesPerToken);
    }

    [Fact]
    public void Formula_text_states_the_coefficients()
    {
        var f = Model8B(FineTuneMethod.Full).Describe();
        Assert.Equal("L = 16h + 8 + 8(a/t)d + 4a/t + 8f/t = 213,128 B/token", f.PerLayerPerToken);
        Assert.Contains("k·n·T·2h", f.WithRecompute);
        Assert.StartsWith("k·n·T·L", f.WithoutRecompute);
    }

    [Fact]
    public void Recompute_keeps_only_layer_inputs_plus_one_layer()
    {
        var m = Model8B(FineTuneMethod.Full);
        long tokens = 4096;
        long with = m.StageBytes(tokens, layers: 32, inFlight: 1, lastStage: false, recompute: true);
        long without = m.StageBytes(tokens, layers: 32, inFlight: 1, lastStage: false, recompute: false);
        long transient = tokens * m.BackwardTransient.BytesPerToken;
        Assert.Equal(32 * tokens * 2 * 4096 + tokens * 213_128 + transient, with);
        Assert.Equal(32 * tokens * 213_128 + transient, without);
    }
}
