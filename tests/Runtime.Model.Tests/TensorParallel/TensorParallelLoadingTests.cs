using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Quantization;
using Runtime.Model.TensorParallel;
using Runtime.Model.Tests.IO;
using Runtime.Model.Tests.Parity;
using TorchSharp;
using static TorchSharp.torch;
using static Runtime.Model.Tests.TensorParallel.TpMicroLlama;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// A shard reads (or draws) exactly its parts of the full model: from a Hugging Face folder, from the counter-based
/// initializer, from a PEFT adapter, and for QLoRA from a dense or a 4-bit folder (NF4 parts quantized on their own).
/// </summary>
public sealed class TensorParallelLoadingTests
{
    static LlamaSlice LoadFolder(string folder, LlamaModelOptions options, ITensorParallelGroup? group = null)
    {
        using var source = new HfModelFolder(folder);
        var spec = LlamaSliceSpec.Whole(source.Config);
        if (group is not null) spec = spec.WithTensorParallel(group.Rank, group.Size);
        return LlamaLoader.Load(source, source.Config, spec, options, group);
    }

    /// <summary>Each parameter's values and placement, by canonical name.</summary>
    static Dictionary<string, (TensorParallelPlacement Placement, float[] Values)> Parameters(LlamaSlice model)
    {
        var placements = TensorParallelPlacements.For(model);
        return model.named_parameters().ToDictionary(p => p.name, p => (placements[p.name], Values(p.parameter)));
    }

    static void AssertPartsOf(LlamaSlice full, Dictionary<string, (TensorParallelPlacement Placement, float[] Values)>[] ranks, string what)
    {
        var whole = full.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        foreach (var (rank, parameters) in ranks.Select((p, i) => (i, p)))
        {
            Assert.Equal(whole.Keys.Order(), parameters.Keys.Order());
            foreach (var (name, (placement, values)) in parameters)
                AssertBitwiseEqual(Part(whole[name], placement.Slice), values, $"{what}: rank {rank}'s {name}");
        }
        Assert.Contains(ranks[0].Values, p => p.Placement.IsSharded);
    }

    static Tensor FixtureIds() => tensor(HfFixtures.LongRows(HfFixtures.Expected["input_ids"]!).SelectMany(r => r).ToArray(), [2, 12]);

    static float[] FixtureLogits(LlamaSlice model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Values(model.forward(FixtureIds(), AttentionContext.SequentialPositions(2, 12)));
    }

    [Fact]
    public void Shards_of_a_hugging_face_folder_hold_their_parts_and_compute_its_logits()
    {
        // micro-untied: 8 heads over 2 key/value heads, intermediate 160: tensor parallelism 2.
        var folder = HfFixtures.Path_("micro-untied");
        var options = Options(requiresGrad: false);
        using var full = LoadFolder(folder, options);
        var expected = FixtureLogits(full);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = LoadFolder(folder, options, group);
            return (Parameters: Parameters(shard), Logits: FixtureLogits(shard));
        });
        AssertPartsOf(full, ranks.Select(r => r.Parameters).ToArray(), "micro-untied");
        foreach (var r in ranks) AssertClose(expected, r.Logits, 1e-5, "tp 2 logits of micro-untied");
    }

    [Fact]
    public void Shards_of_a_peft_adapter_hold_their_parts_and_compute_pefts_logits()
    {
        var folder = HfFixtures.Path_("micro-untied");
        var adapter = HfFixtures.Path_("micro-untied-lora");
        var options = Options(requiresGrad: false);
        using var full = LoadFolder(folder, options);
        PeftAdapter.LoadInto(full, adapter);
        var expected = FixtureLogits(full);
        float[] peft;
        using (var file = new SafeTensorsFile(HfFixtures.Path_("micro-untied-lora.logits.safetensors")))
        using (var logits = file.Load("logits"))
            peft = Values(logits);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = LoadFolder(folder, options, group);
            PeftAdapter.LoadInto(shard, adapter);
            return (Parameters: Parameters(shard), Logits: FixtureLogits(shard));
        });
        AssertPartsOf(full, ranks.Select(r => r.Parameters).ToArray(), "micro-untied + adapter");
        Assert.Contains(ranks[1].Parameters, p => p.Key.EndsWith("o_proj.lora_A.weight", StringComparison.Ordinal) && p.Value.Placement.IsSharded);
        foreach (var r in ranks)
        {
            AssertClose(expected, r.Logits, 1e-5, "tp 2 adapted logits against the unsharded model");
            AssertClose(peft, r.Logits, 1e-4, "tp 2 adapted logits against PEFT's");
        }
    }

    [Fact]
    public void Initialized_shards_hold_their_parts_of_the_whole_initialization()
    {
        var config = MicroConfig();
        var initializer = new LlamaInitializer(seed: 5, std: 0.1);
        using var full = initializer.CreateSlice(config, options: Options());
        var group = LocalTensorParallelGroup.Create(4);
        // Building communicates nothing: the ranks can be built one after the other on this thread.
        var ranks = group.Select(member =>
        {
            using var shard = initializer.CreateSlice(config, LlamaSliceSpec.Whole(config).WithTensorParallel(member.Rank, 4), Options(), member);
            return Parameters(shard);
        }).ToArray();
        AssertPartsOf(full, ranks, "initializer");
    }

    /// <summary>hidden 64, head_dim 16, intermediate 128: every tp 2 part starts on a 64-element NF4 block of the full tensor.</summary>
    static LlamaConfig AlignedConfig() => MicroConfig() with { HiddenSize = 64, HeadDim = 16, IntermediateSize = 128, NumHiddenLayers = 1 };

    static readonly LlamaModelOptions Nf4Fp32 = new() { DType = ScalarType.Float32, ProjectionBase = ProjectionBase.Nf4, RequiresGrad = false };

    static IEnumerable<Projection> LayerProjections(LlamaSlice model) =>
        model.Model.Layers.SelectMany(l => LoraConfig.AllTargets.Select(t => LoraInjector.ProjectionOf(l, t)));

    /// <summary>The 4-bit codes of a weight as [out, in] (high nibble first, as bitsandbytes packs them).</summary>
    static Tensor Codes(Nf4Weight weight)
    {
        using var scope = NewDisposeScope();
        using var quantized = weight.ToNf4Tensor();
        var bytes = quantized.Packed.reshape(-1).to(ScalarType.Int32);
        var codes = stack([bytes.bitwise_right_shift(4), bytes.bitwise_and(15)], 1).reshape(-1);
        return codes.narrow(0, 0, weight.Shape[0] * weight.Shape[1]).reshape(weight.Shape).MoveToOuterDisposeScope();
    }

    sealed record Nf4Part(string Path, TensorSlice? Slice, int[] Codes, float[] Dequantized, float[] Dense);

    /// <summary>Each projection's codes and dequantized values, and the dense values of its part, by module path.</summary>
    static Nf4Part[] Nf4Parts(LlamaSlice model)
    {
        using var scope = NewDisposeScope();
        return LayerProjections(model).Select(p => new Nf4Part(p.ModulePath, p.WeightSlice,
            Codes(p.QuantizedWeight!).data<int>().ToArray(), Values(p.QuantizedWeight!.Dequantize(ScalarType.Float32)), [])).ToArray();
    }

    static void AssertNf4PartsOf(LlamaSlice full, Nf4Part[][] ranks, string what)
    {
        var whole = LayerProjections(full).ToDictionary(p => p.ModulePath);
        foreach (var (rank, parts) in ranks.Select((p, i) => (i, p)))
            foreach (var part in parts)
            {
                var w = whole[part.Path].QuantizedWeight!;
                using var codes = Codes(w);
                using var dequantized = w.Dequantize(ScalarType.Float32);
                using var expectedCodes = part.Slice is { } s ? codes.narrow(s.Dim, s.Start, s.Length).contiguous() : codes.alias();
                // Blocks align, so each element gets the code it has in the full tensor's quantization ...
                Assert.Equal(expectedCodes.data<int>().ToArray(), part.Codes);
                // ... and only the double-quantized absmax (8 bits per block, offset by the part's own mean) differs.
                // A part's value is code * its block's absmax, so it differs from the full tensor's by that absmax's
                // relative error alone (8-bit dynamic codes of absmax - mean, per part); measured here: under 1%.
                var expected = Part(dequantized, part.Slice);
                for (int i = 0; i < expected.Length; i++)
                    Assert.True(Math.Abs(part.Dequantized[i] - expected[i]) <= 0.02 * Math.Abs(expected[i]),
                        $"{what}: rank {rank}'s dequantized {part.Path}: element {i} is {part.Dequantized[i]:R}, the full tensor's {expected[i]:R}");
                Assert.Contains(Enumerable.Range(0, expected.Length), i => expected[i] != part.Dequantized[i]);
            }
    }

    [Fact]
    public void Nf4_parts_from_a_dense_folder_are_quantized_on_their_own_and_train_like_the_dense_model_of_their_values()
    {
        using var folder = new TempFolder();
        var config = AlignedConfig();
        Lora.QloraTests.WriteDenseFolder(folder.Path, config);
        using var full = LoadFolder(folder.Path, Nf4Fp32);
        var lora = new LoraConfig(4, 8, 0.2, LoraConfig.AllTargets);
        var randomness = new StepRandomness(2, 1, 0);

        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = LoadFolder(folder.Path, Nf4Fp32, group);
            var parts = Nf4Parts(shard);
            LoraInjector.Inject(shard, lora, seed: 4);
            RandomizeLoraB(shard, lora);
            var (logits, _) = ForwardBackward(shard, randomness);
            TensorParallelPlacements.AllReducePartialGradients(shard);
            return (Parts: parts, Logits: logits, Gradients: Gradients(shard));
        });
        AssertNf4PartsOf(full, ranks.Select(r => r.Parts).ToArray(), "dense folder");

        // The reference: a dense fp32 model holding exactly the parts' dequantized values, joined, with the same adapter.
        var weights = Llama.MicroLlama.Weights(config, 7);
        foreach (var path in ranks[0].Parts.Select(p => p.Path))
        {
            var pieces = ranks.Select(r => r.Parts.Single(p => p.Path == path)).ToArray();
            var fullShape = weights[path + ".weight"].Shape;
            using var joined = cat(pieces.Select(p => tensor(p.Dequantized, PartShape(fullShape, p.Slice))).ToList(), pieces[0].Slice?.Dim ?? 0);
            weights[path + ".weight"] = (joined.data<float>().ToArray(), fullShape);
        }
        using var source = new Llama.DictionaryTensorSource(weights);
        using var dense = LlamaLoader.Load(source, config, options: Options());
        LoraInjector.Inject(dense, lora, seed: 4);
        RandomizeLoraB(dense, lora);
        var expected = ForwardBackward(dense, randomness);
        var denseGradients = dense.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (rank, r) in ranks.Select((r, i) => (i, r)))
        {
            AssertClose(expected.Logits, r.Logits, 1e-5, $"rank {rank}'s QLoRA logits");
            Assert.Equal(denseGradients.Keys.Order(), r.Gradients.Keys.Order());
            foreach (var (name, (placement, gradient)) in r.Gradients)
                AssertClose(Part(denseGradients[name], placement.Slice), gradient, 1e-5, $"rank {rank}'s QLoRA gradient of {name}");
        }
    }

    static long[] PartShape(long[] full, TensorSlice? slice)
    {
        var shape = (long[])full.Clone();
        if (slice is { } s) shape[s.Dim] = s.Length;
        return shape;
    }

    [Fact]
    public void Parts_of_a_4_bit_folder_keep_its_codes_and_dequantize_to_its_values()
    {
        using var dense = new TempFolder();
        using var quantized = new TempFolder();
        var config = AlignedConfig();
        Lora.QloraTests.WriteDenseFolder(dense.Path, config);
        Nf4ModelQuantizer.QuantizeFolder(dense.Path, quantized.Path);

        // NF4 bases: re-quantized parts of the stored blocks.
        using (var full = LoadFolder(quantized.Path, Nf4Fp32))
        {
            var parts = TensorParallelRanks.Run(2, group =>
            {
                using var shard = LoadFolder(quantized.Path, Nf4Fp32, group);
                Assert.All(LayerProjections(shard), p => Assert.Equal(ScalarType.BFloat16, p.QuantizedWeight!.OriginalDType));
                return Nf4Parts(shard);
            });
            AssertNf4PartsOf(full, parts, "4-bit folder");
        }

        // Dense bases: the stored weights dequantized and cut, exactly the unsplit model's values.
        var options = Options(requiresGrad: false);
        using var wholeDense = LoadFolder(quantized.Path, options);
        var ranks = TensorParallelRanks.Run(2, group =>
        {
            using var shard = LoadFolder(quantized.Path, options, group);
            return Parameters(shard);
        });
        AssertPartsOf(wholeDense, ranks, "4-bit folder, dense base");
    }
}
