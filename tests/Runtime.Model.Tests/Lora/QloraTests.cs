using System.Text.Json.Nodes;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Quantization;
using Runtime.Model.Tests.IO;
using Runtime.Model.Tests.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>
/// QLoRA slices: NF4 projection bases built from a dense folder (quantized as loaded) or read from an `rt quantize`
/// folder, against dense slices holding the dequantized weights; gradients; merging from a 4-bit base.
/// </summary>
public sealed class QloraTests
{
    static readonly LlamaModelOptions Qlora = new()
    {
        DType = ScalarType.BFloat16, ProjectionBase = ProjectionBase.Nf4, RequiresGrad = false,
    };

    static readonly LlamaModelOptions DenseBf16 = new() { DType = ScalarType.BFloat16, RequiresGrad = false };

    /// <summary>The micro model as a Hugging Face folder (fp32, with a tokenizer file to be carried over).</summary>
    internal static string WriteDenseFolder(string folder, LlamaConfig config, int seed = 7)
    {
        var weights = MicroLlama.Weights(config, seed);
        var entries = LlamaTensorNames.All(config)
            .Select(t => new TensorEntry(t.Name, ScalarType.Float32, t.Shape, () => tensor(weights[t.Name].Data, t.Shape)))
            .ToList();
        HfModelWriter.Write(folder, entries);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{\"chat_template\": \"not parsed\"}");
        return folder;
    }

    static LlamaSlice Load(string folder, LlamaModelOptions options, LlamaSliceSpec? slice = null)
    {
        using var source = new HfModelFolder(folder);
        return LlamaLoader.Load(source, source.Config, slice, options);
    }

    static float[] Logits(LlamaSlice model)
    {
        using var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(10, 5), MicroLlama.RandomTokens(10, 6));
        using var positions = AttentionContext.SequentialPositions(2, 10);
        using var _ = no_grad();
        using var logits = model.forward(tokens, positions);
        return logits.data<float>().ToArray();
    }

    [Fact]
    public void Nf4_slice_quantizes_the_projections_only_and_computes_the_dense_forward_of_the_dequantized_weights()
    {
        using var folder = new TempFolder();
        var config = MicroLlama.Config(tied: false);
        WriteDenseFolder(folder.Path, config);
        using var qlora = Load(folder.Path, Qlora);

        foreach (var layer in qlora.Model.Layers)
            foreach (var target in LoraConfig.AllTargets)
                Assert.True(LoraInjector.ProjectionOf(layer, target).IsQuantized);
        Assert.False(qlora.LmHead!.IsQuantized);
        // Embeddings, norms and the head stay dense bf16 parameters; nothing of the projections is a parameter.
        string[] denseNames =
        [
            "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight",
            .. Enumerable.Range(0, 3).SelectMany(i => new[] { $"model.layers.{i}.input_layernorm.weight", $"model.layers.{i}.post_attention_layernorm.weight" }),
        ];
        Assert.Equal(denseNames.Order(StringComparer.Ordinal), qlora.named_parameters().Select(p => p.name).Order(StringComparer.Ordinal));
        Assert.All(qlora.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));

        // The reference: a dense bf16 model whose projections hold NF4(bf16(W)) dequantized, built independently of the loader.
        var weights = MicroLlama.Weights(config, 7);
        var dequantized = weights.ToDictionary(p => p.Key, p =>
        {
            if (!Nf4ModelQuantizer.IsLayerProjection(new LlamaTensorSpec(p.Key, p.Value.Shape))) return p.Value;
            using var scope = NewDisposeScope();
            using var q = Nf4Quantizer.Quantize(tensor(p.Value.Data, p.Value.Shape).to(ScalarType.BFloat16));
            return (Nf4Quantizer.Dequantize(q, ScalarType.BFloat16).to(ScalarType.Float32).data<float>().ToArray(), p.Value.Shape);
        });
        using var denseSource = new DictionaryTensorSource(dequantized);
        using var dense = LlamaLoader.Load(denseSource, config, options: DenseBf16);
        Assert.Equal(Logits(dense), Logits(qlora));

        // And quantization is not a no-op: the plain bf16 model computes something else.
        using var unquantized = Load(folder.Path, DenseBf16);
        Assert.NotEqual(Logits(unquantized), Logits(qlora));
    }

    [Fact]
    public void Quantized_folder_holds_bitsandbytes_tensors_and_loads_to_the_same_logits_as_quantizing_on_load()
    {
        using var folder = new TempFolder();
        var config = MicroLlama.Config(tied: false);
        var denseFolder = WriteDenseFolder(Path.Combine(folder.Path, "dense"), config);
        var quantizedFolder = Path.Combine(folder.Path, "nf4");
        var result = Nf4ModelQuantizer.QuantizeFolder(denseFolder, quantizedFolder);
        Assert.Equal(3 * 7, result.QuantizedWeights);
        Assert.Equal(config.NumHiddenLayers * config.LayerLinearParameters, result.QuantizedParameters);
        Assert.Equal(["tokenizer_config.json"], result.CopiedFiles);
        Assert.Equal(File.ReadAllBytes(Path.Combine(denseFolder, "tokenizer_config.json")), File.ReadAllBytes(Path.Combine(quantizedFolder, "tokenizer_config.json")));

        using (var written = new HfModelFolder(quantizedFolder))
        {
            const string q0 = "model.layers.0.self_attn.q_proj.weight";
            Assert.Equal(Nf4Serialization.TensorNames(q0).Order(StringComparer.Ordinal),
                written.Names.Where(n => n.StartsWith(q0, StringComparison.Ordinal)).Order(StringComparer.Ordinal));
            Assert.Equal("U8", written.Describe(q0).DType);
            Assert.Equal(new long[] { 48L * 32 / 2, 1 }, written.Describe(q0).Shape);
            Assert.Equal("BF16", written.Describe("lm_head.weight").DType);
            Assert.Equal("BF16", written.Describe("model.embed_tokens.weight").DType);
            Assert.Equal("BF16", written.Describe("model.layers.1.input_layernorm.weight").DType);
            Assert.False(Nf4Serialization.IsQuantized(written, "lm_head.weight"));
            Assert.Equal(3 * (7 * 6 + 2) + 3, written.Names.Count);
        }
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(quantizedFolder, "config.json")))!;
        Assert.Equal("bfloat16", json["torch_dtype"]!.GetValue<string>());
        Assert.True(json["quantization_config"]!["load_in_4bit"]!.GetValue<bool>());
        Assert.True(json["quantization_config"]!["bnb_4bit_use_double_quant"]!.GetValue<bool>());
        Assert.Equal(BitsAndBytesConfig.QLoRA, BitsAndBytesConfig.FromModelFolder(quantizedFolder));

        using var fromDense = Load(denseFolder, Qlora);
        using var fromQuantized = Load(quantizedFolder, Qlora);
        Assert.All(fromQuantized.Model.Layers, l => Assert.True(l.Mlp.DownProj.IsQuantized));
        Assert.Equal(Logits(fromDense), Logits(fromQuantized));

        // A dense load of the 4-bit folder dequantizes it: the same numbers as the 4-bit bases.
        using var dequantized = Load(quantizedFolder, DenseBf16);
        Assert.False(dequantized.Model.Layers.First().SelfAttention.QProj.IsQuantized);
        Assert.Equal(Logits(fromQuantized), Logits(dequantized));

        var again = Assert.Throws<TensorFileException>(() => Nf4ModelQuantizer.QuantizeFolder(quantizedFolder, Path.Combine(folder.Path, "twice")));
        Assert.Contains("already quantized", again.Message);
    }

    [Fact]
    public void A_qlora_stage_trains_only_its_adapters_and_passes_gradients_to_its_input()
    {
        using var folder = new TempFolder();
        var config = MicroLlama.Config(tied: false);
        WriteDenseFolder(folder.Path, config);
        using var stage = Load(folder.Path, Qlora, new LlamaSliceSpec(1, 3, HasEmbedding: false, HasHead: true));
        LoraInjector.Inject(stage, new LoraConfig(4, 8, 0.1, LoraConfig.AllTargets), seed: 2);

        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var hidden = randn([2, 10, config.HiddenSize], generator: g).to(ScalarType.BFloat16).requires_grad_(true);
        var positions = AttentionContext.SequentialPositions(2, 10);
        using var context = stage.CreateContext(positions, randomness: new StepRandomness(1, 1, 0));
        var logits = stage.call(hidden, context);
        var tokens = MicroLlama.Rows(MicroLlama.RandomTokens(10, 7), MicroLlama.RandomTokens(10, 8));
        var (loss, _) = CausalLmLoss.Compute(logits, tokens);
        loss.backward();

        Assert.NotNull(hidden.grad);
        Assert.True(hidden.grad!.to(ScalarType.Float32).abs().sum().item<float>() > 0);
        var trainable = LoraInjector.TrainableParameters(stage);
        Assert.Equal(2 * 7 * 2, trainable.Count);
        // B starts at zero, so A's first gradient is zero; B's is not.
        Assert.All(trainable.Where(t => t.Name.EndsWith("lora_B.weight")), t => Assert.True(t.Parameter.grad!.abs().sum().item<float>() > 0, t.Name));
        Assert.All(trainable, t => Assert.NotNull(t.Parameter.grad));
        Assert.All(stage.named_parameters().Where(p => !LoraInjector.IsAdapterParameter(p.name)), p => Assert.Null(p.parameter.grad));
        Assert.All(stage.buffers(), b => Assert.Null(b.grad));
    }

    [Fact]
    public void Merging_into_a_4bit_base_dequantizes_and_writes_bf16_without_quantization_config()
    {
        using var folder = new TempFolder();
        var config = MicroLlama.Config(tied: false);
        var denseFolder = WriteDenseFolder(Path.Combine(folder.Path, "dense"), config);
        var quantizedFolder = Path.Combine(folder.Path, "nf4");
        Nf4ModelQuantizer.QuantizeFolder(denseFolder, quantizedFolder);

        var lora = new LoraConfig(4, 8, 0.0, ["q_proj", "down_proj"]);
        var adapterFolder = Path.Combine(folder.Path, "adapter");
        using (var model = Load(quantizedFolder, Qlora))
        {
            LoraInjector.Inject(model, lora, seed: 4);
            using (no_grad())
                foreach (var (_, p) in LoraInjector.Targets(model, lora))
                    p.LoraB!.normal_(0, 0.1);
            PeftAdapter.Save(adapterFolder, LoraInjector.AdapterTensors(model), lora);
        }

        var mergedFolder = Path.Combine(folder.Path, "merged");
        var result = LoraMerge.MergeFolder(quantizedFolder, adapterFolder, mergedFolder);
        Assert.True(result.FromQuantizedBase);
        Assert.Equal(ScalarType.BFloat16, result.DType);
        Assert.Equal(3 * 2, result.MergedWeights);
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(mergedFolder, "config.json")))!;
        Assert.False(json.ContainsKey("quantization_config"));
        Assert.Equal("bfloat16", json["torch_dtype"]!.GetValue<string>());

        using var merged = new HfModelFolder(mergedFolder);
        using var source = new HfModelFolder(quantizedFolder);
        using var adapter = PeftAdapter.Load(adapterFolder);
        Assert.All(merged.Names, n => Assert.Equal("BF16", merged.Describe(n).DType));
        Assert.Equal(LlamaTensorNames.All(config).Select(t => t.Name).Order(StringComparer.Ordinal), merged.Names);

        // down_proj of layer 2: bf16(float(dequantize_bf16(W)) + 2 * B @ A); k_proj (not adapted): dequantized as is.
        const string down = "model.layers.2.mlp.down_proj";
        using var scope = NewDisposeScope();
        using var q = Nf4Serialization.FromTensors(down + ".weight", source);
        var w = Nf4Quantizer.Dequantize(q, ScalarType.BFloat16).to(ScalarType.Float32);
        var expected = (w + adapter.Tensors[down + ".lora_B.weight"].matmul(adapter.Tensors[down + ".lora_A.weight"]) * 2.0).to(ScalarType.BFloat16);
        Assert.True(merged.Load(down + ".weight").eq(expected).all().item<bool>());
        using var k = Nf4Serialization.FromTensors("model.layers.0.self_attn.k_proj.weight", source);
        Assert.True(merged.Load("model.layers.0.self_attn.k_proj.weight").eq(Nf4Quantizer.Dequantize(k, ScalarType.BFloat16)).all().item<bool>());
    }
}
