using Runtime.Model.Config;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Planning;

/// <summary>
/// Bytes per category for the toy model, counted by hand. The toy (h 8, f 16, 2 heads and 1 kv head of 4, vocab 32,
/// untied) has per layer q 64, k 32, v 32, o 64, gate 128, up 128, down 128 = 576 projection weights and 16 norm
/// weights; embedding 256, final norm 8, lm_head 256: 1,112 parameters with one layer. Micro-batch 2 x seq 3 = 6 tokens.
/// </summary>
public class CategoryBytesTests
{
    static StagePlan OnlyStage(PlanRequest r)
    {
        var plan = MemoryPlanner.Plan(r);
        return Assert.Single(plan.Chosen.Stages);
    }

    [Fact]
    public void Toy_counts_1112_parameters()
    {
        Assert.Equal(1112, ToyModel.Config().ParameterCount);
    }

    [Fact]
    public void Full_bf16_is_2_4_and_12_bytes_a_parameter_and_activations_match_the_hand_count()
    {
        var s = OnlyStage(ToyModel.Request(FineTuneMethod.Full));
        var m = s.Memory;
        Assert.Equal(0, m.Weights);
        Assert.Equal(2 * 1112, m.Trainable);      // bf16 weights
        Assert.Equal(4 * 1112, m.Gradients);      // fp32 gradients
        Assert.Equal(12 * 1112, m.Optimizer);     // AdamW m, v (8) + fp32 master (4)
        // Per token, one layer keeps: norms' fp32 inputs 2*4*8 = 64, rstd 8, normalized inputs of the trained norm
        // weights 2*2*8 = 32, q/k/v input 16, q/k/v/out (kv repeated) 4*2*8 = 64, logsumexp 4*2 = 8, MLP input 16,
        // gate/silu/up outputs 3*2*16 = 96, down input 2*16 = 32: 336 B.
        // Recompute keeps the layer input (2*8 = 16 B/token) and re-runs one layer at a time: 6*16 + 6*336.
        // Backward transients 3*2*16 + 2*8 = 112 B/token. Head: final norm 4*8 + 4, its normalized input 16, lm_head
        // input 16, fp32 log-probs 4*32: 196 B/token; loss gradients 8*32 = 256 B/token. The lm_head weight gradient
        // (4*32*8 = 1024 B) beside the logits' gradient (6*4*32 = 768) stays under the loss's 6*(196 + 256) = 2712.
        // With recompute the loss's phase and a recomputed layer's phase (6*336 + 6*112 = 2688) do not overlap: the
        // larger one counts. Without recompute everything is alive when the loss runs its backward: the sum.
        long withRecompute = 6 * 16 + Math.Max(6 * 336 + 6 * 112, 6 * 196 + 6 * 256);
        long withoutRecompute = 6 * 336 + 6 * 112 + 6 * 196 + 6 * 256;
        Assert.Equal(2808, withRecompute);
        Assert.Equal(withRecompute, m.Activations);
        Assert.Equal(withRecompute, s.ActivationsWithRecompute);
        Assert.Equal(withoutRecompute, s.ActivationsWithoutRecompute);
        Assert.Equal(0, m.Buffers);
        long tensors = 2224 + 4448 + 13344 + 2808;
        Assert.Equal((long)Math.Ceiling(0.05 * tensors) + 1000, m.Reserve);
        Assert.Equal(tensors + m.Reserve, m.Total);
    }

    [Fact]
    public void Full_fp32_has_no_master_copy()
    {
        var m = OnlyStage(ToyModel.Request(FineTuneMethod.Full) with { Precision = ComputePrecision.Fp32 }).Memory;
        Assert.Equal(4 * 1112, m.Trainable);
        Assert.Equal(4 * 1112, m.Gradients);
        Assert.Equal(8 * 1112, m.Optimizer);
    }

    [Fact]
    public void Lora_keeps_the_base_frozen_and_fp32_adapters_with_fp32_adam()
    {
        var s = OnlyStage(ToyModel.Request(FineTuneMethod.Lora));
        var m = s.Memory;
        // r = 2: q 2*(8+8) 32, k 2*(8+4) 24, v 24, o 32, gate 2*(8+16) 48, up 48, down 48 = 256 adapter parameters.
        Assert.Equal(256, s.TrainableParametersPerGpu);
        Assert.Equal(2 * 1112, m.Weights);
        Assert.Equal(4 * 256, m.Trainable);
        Assert.Equal(4 * 256, m.Gradients);
        Assert.Equal(8 * 256, m.Optimizer);
        // Per token: norms 64 + 8, attention 64 + 8, MLP 96 (frozen projections keep no inputs); adapters cast their
        // inputs to fp32: q, k, v 3*4*8, o 4*8, gate, up 2*4*8, down 4*16; A outputs 7*4*2: 552 B.
        // Head without trained weights: 4*8 + 4 + 4*32 = 164. The recomputed layer's phase is the larger one.
        Assert.Equal(6 * 16 + Math.Max(6 * 552 + 6 * 112, 6 * 164 + 6 * 256), m.Activations);
        Assert.Equal(6 * 16 + 6 * 552 + 6 * 112, m.Activations);
    }

    [Fact]
    public void Qlora_stores_projections_in_nf4_and_the_rest_in_bf16()
    {
        var m = OnlyStage(ToyModel.Request(FineTuneMethod.Qlora)).Memory;
        // NF4 of n elements: n/2 codes + one absmax byte per 64 + 4 bytes per 256 absmax + offset 4 + code tables
        // (16 + 256) * 4. q, o (64): 32+1+4+1092 = 1129; k, v (32): 1113; gate, up, down (128): 1162.
        long nf4 = 2 * 1129 + 2 * 1113 + 3 * 1162;
        long bf16Rest = 2 * (16 + 256 + 8 + 256);
        Assert.Equal(nf4 + bf16Rest, m.Weights);
        Assert.Equal(4 * 256, m.Trainable);
    }

    [Fact]
    public void Tensor_parallel_splits_projections_vocab_and_adapters_like_megatron()
    {
        // kv heads 2 so tp 2 can split them: per layer q, k, v, o 64 each, gate, up, down 128 each = 640.
        var full = OnlyStage(ToyModel.Request(FineTuneMethod.Full, kvHeads: 2) with { Tp = 2, Dp = 1, VocabularyParallel = true });
        // One rank: 640/2 projections + 16 norms (replicated) + 16x8 embedding rows + 8 final norm + 16x8 head rows.
        Assert.Equal(320 + 16 + 128 + 8 + 128, full.TrainableParametersPerGpu);

        // Runtime's workers today: the embedding and head stay whole on every rank (32x8 rows each).
        var replicated = OnlyStage(ToyModel.Request(FineTuneMethod.Full, kvHeads: 2) with { Tp = 2, Dp = 1 });
        Assert.Equal(320 + 16 + 256 + 8 + 256, replicated.TrainableParametersPerGpu);

        var lora = OnlyStage(ToyModel.Request(FineTuneMethod.Lora, kvHeads: 2) with { Tp = 2 });
        // Column (q, k, v, gate, up): A [2, in] whole, B [out/2, 2]; row (o, down): A [2, in/2], B [out, 2] whole.
        // q, k, v: 16 + 8 each; o: 8 + 16; gate, up: 16 + 16 each; down: 16 + 16.
        Assert.Equal(3 * 24 + 24 + 2 * 32 + 32, lora.TrainableParametersPerGpu);
    }

    [Fact]
    public void Activations_under_tensor_parallelism_split_heads_mlp_and_vocab_only()
    {
        var model = new ActivationModel(ToyModel.Request(FineTuneMethod.Full, kvHeads: 2) with { VocabularyParallel = true }, tp: 2);
        // Replicated: norms 64 + 8 + 32, q/k/v input 16, MLP input 16. Split: attention 4*2*(1*4) + 4*1, gate/silu/up
        // 3*2*8, down input 2*8.
        Assert.Equal(64 + 8 + 32 + 16 + 32 + 4 + 16 + 48 + 16, model.Layer.BytesPerToken);
        Assert.Equal(8 * 16, model.HeadTransient.BytesPerToken);    // vocab 32 over 2 ranks, fp32 gradients x2
        var replicated = new ActivationModel(ToyModel.Request(FineTuneMethod.Full, kvHeads: 2), tp: 2);
        Assert.Equal(8 * 32, replicated.HeadTransient.BytesPerToken); // every rank computes the whole vocabulary
    }

    [Fact]
    public void Eager_attention_keeps_probabilities_and_packing_keeps_a_mask()
    {
        var eager = new ActivationModel(ToyModel.Request(FineTuneMethod.Full) with { Attention = AttentionKernel.Eager }, tp: 1);
        // q, k^T, v 3*2*8 = 48; probabilities fp32 4*2*3 = 24 and bf16 2*2*3 = 12; o_proj input 16; rest as fused less
        // the fused kernel's q/k/v/out and logsumexp.
        Assert.Equal(64 + 8 + 32 + 16 + 48 + 24 + 12 + 16 + 16 + 96 + 32, eager.Layer.BytesPerToken);
        Assert.Equal(2 * 3, eager.Mask.BytesPerToken);

        var packed = new ActivationModel(ToyModel.Request(FineTuneMethod.Full) with { Packing = true }, tp: 1);
        Assert.Equal(2 * 3, packed.Mask.BytesPerToken);
        var plain = new ActivationModel(ToyModel.Request(FineTuneMethod.Full), tp: 1);
        Assert.Equal(0, plain.Mask.BytesPerToken);
    }

    [Fact]
    public void Pipeline_stages_hold_1f1b_micro_batches_and_boundary_buffers()
    {
        var plan = MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full, layers: 4) with { Pp = 2 });
        var (s0, s1) = (plan.Chosen.Stages[0], plan.Chosen.Stages[1]);
        Assert.Equal((0, 2, 2), (s0.FirstLayer, s0.Layers, s0.MicroBatchesInFlight));
        Assert.Equal((2, 2, 1), (s1.FirstLayer, s1.Layers, s1.MicroBatchesInFlight));
        Assert.Equal(2 * 592 + 256, s0.TrainableParametersPerGpu);
        Assert.Equal(2 * 592 + 8 + 256, s1.TrainableParametersPerGpu);
        // Stage 0: 2 micro-batches x 2 layers of 16 B/token inputs, one layer recomputed, transients.
        Assert.Equal(2 * 2 * 6 * 16 + 6 * 336 + 6 * 112, s0.Memory.Activations);
        // Stage 1: its layers' inputs, then the loss's phase (6*196 + 6*256 = 2712), larger than a layer's (2688).
        Assert.Equal(1 * 2 * 6 * 16 + 6 * 196 + 6 * 256, s1.Memory.Activations);
        // One boundary each: a received activation and a received gradient of 6 tokens x 8 x bf16.
        Assert.Equal(2 * 6 * 8 * 2, s0.Memory.Buffers);
        Assert.Equal(2 * 6 * 8 * 2, s1.Memory.Buffers);
        // Stage 0 (two micro-batches in flight, 3072 B of activations) now outweighs the head's stage (2904).
        Assert.Same(plan.Chosen.Peak, s0);

        var gpipe = MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full, layers: 4) with
        {
            Pp = 2, Schedule = PipelineSchedule.GPipe, MicroBatches = 3,
        });
        Assert.All(gpipe.Chosen.Stages, s => Assert.Equal(3, s.MicroBatchesInFlight));
        // GPipe's last stage keeps all three micro-batches' log-probabilities: the loss's phase 3*6*196 + 6*256 beats a
        // recomputed layer beside the two other heads, 2*6*196 + 6*336 + 6*112.
        Assert.Equal(3 * 2 * 6 * 16 + 3 * 6 * 196 + 6 * 256, gpipe.Chosen.Stages[1].Memory.Activations);
    }

    [Fact]
    public void Tied_embeddings_cost_a_head_copy_only_when_pipelined()
    {
        var single = OnlyStage(ToyModel.Request(FineTuneMethod.Full, layers: 2, tied: true));
        Assert.Equal(2 * 592 + 256 + 8, single.TrainableParametersPerGpu);
        var piped = MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full, layers: 2, tied: true) with { Pp = 2 });
        Assert.Equal(592 + 8 + 256, piped.Chosen.Stages[1].TrainableParametersPerGpu);
    }

    [Fact]
    public void Data_parallel_replicas_add_gradient_buckets_but_keep_full_optimizer_state()
    {
        var one = OnlyStage(ToyModel.Request(FineTuneMethod.Full));
        var two = OnlyStage(ToyModel.Request(FineTuneMethod.Full) with { Dp = 2 });
        Assert.Equal(one.Memory.Optimizer, two.Memory.Optimizer);       // no ZeRO: a full copy per replica
        Assert.Equal(2 * 4 * 1112, two.Memory.Buffers);                 // two buckets, each capped by the 4,448 B of gradients
    }

    [Fact]
    public void Adamw_is_8_bytes_a_trained_parameter_plus_4_for_bf16_masters_on_a_real_model()
    {
        foreach (var (method, precision, optimizerPerParam) in new[]
                 {
                     (FineTuneMethod.Full, ComputePrecision.Bf16, 12L), (FineTuneMethod.Full, ComputePrecision.Fp32, 8L),
                     (FineTuneMethod.Lora, ComputePrecision.Bf16, 8L), (FineTuneMethod.Qlora, ComputePrecision.Bf16, 8L),
                 })
        {
            var r = new PlanRequest
            {
                Model = LlamaPresets.Llama31_8B, Method = method, Precision = precision, Gpu = GpuCatalog.Get("b200"),
                Tp = 1, Pp = 1, Dp = 1,
            };
            var s = MemoryPlanner.Plan(r).Chosen.Peak;
            Assert.Equal(optimizerPerParam * s.TrainableParametersPerGpu, s.Memory.Optimizer);
            Assert.Equal(4 * s.TrainableParametersPerGpu, s.Memory.Gradients);
        }
    }

    [Fact]
    public void Bad_layouts_are_refused_with_the_reason()
    {
        var e = Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full) with { Tp = 2 }));
        Assert.Contains("num_key_value_heads", e.Message);
        e = Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full) with { Pp = 2 }));
        Assert.Contains("exceeds the model's 1 layers", e.Message);
        e = Assert.Throws<PlanningException>(() => MemoryPlanner.Plan(ToyModel.Request(FineTuneMethod.Full) with { Gpus = 3 }));
        Assert.Contains("--gpus 3", e.Message);
    }
}
