using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Lora;

/// <summary>What <see cref="LoraMerge.MergeFolder"/> wrote.</summary>
public sealed record MergeResult(string Output, ScalarType DType, int MergedWeights, int Tensors, bool FromQuantizedBase,
    IReadOnlyList<string> CopiedFiles);

/// <summary>
/// Folds a LoRA adapter into its base weights: <c>W' = W + scaling * (B @ A)</c>, computed in float32 and cast to the
/// output dtype, which is PEFT's <c>merge_and_unload</c> (its in-place <c>weight += delta</c> promotes to float32
/// and casts back to the weight's dtype).
/// </summary>
public static class LoraMerge
{
    /// <summary>The merged weight in <paramref name="dtype"/>; <paramref name="weight"/> [out, in], A [r, in], B [out, r].</summary>
    public static Tensor Merge(Tensor weight, Tensor a, Tensor b, double scaling, ScalarType dtype)
    {
        if (weight.dim() != 2 || a.dim() != 2 || b.dim() != 2 || a.shape[1] != weight.shape[1] || b.shape[0] != weight.shape[0] || a.shape[0] != b.shape[1])
            throw new ArgumentException(
                $"LoRA A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}] do not fit a weight [{string.Join(", ", weight.shape)}]");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var delta = b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32)) * scaling;
        return (weight.to(ScalarType.Float32) + delta).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes <paramref name="outputFolder"/> as a full Hugging Face model folder: every tensor of the base (dense or
    /// 4-bit) in <paramref name="dtype"/>, the adapted projections merged, produced and written one tensor at a time
    /// (sharded as transformers shards), config.json from the base with its dtype updated and without
    /// quantization_config, and the tokenizer and generation files copied. A 4-bit base is dequantized first (as
    /// PEFT's dequantizing merge does: to the dtype it was quantized from, then merged in float32).
    /// Default <paramref name="dtype"/>: float32 when the base's embedding is stored in float32, else bfloat16.
    /// </summary>
    public static MergeResult MergeFolder(string modelFolder, string adapterFolder, string outputFolder, ScalarType? dtype = null,
        long maxShardBytes = HfModelWriter.DefaultMaxShardBytes)
    {
        HfFolderFiles.CheckDistinct(outputFolder, modelFolder, adapterFolder);
        if (dtype is { } requested && requested is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"merged weights are written as float32 or bfloat16, not {requested}");

        using var source = new HfModelFolder(modelFolder);
        var config = source.Config;
        var quantized = BitsAndBytesConfig.FromModelFolder(source.Location) is not null
                        || source.Names.Any(n => n.EndsWith(Nf4Serialization.QuantStateSuffix, StringComparison.Ordinal));
        using var adapter = PeftAdapter.Load(adapterFolder);
        PeftAdapter.CheckCoversModel(adapter.Tensors.Keys, adapter.Config, config.NumHiddenLayers, Path.Combine(adapterFolder, PeftAdapter.WeightsFileName));

        var outputDType = dtype ?? (!quantized && source.Describe(LlamaTensorNames.EmbedTokens).DType == "F32"
            ? ScalarType.Float32
            : ScalarType.BFloat16);
        var dense = LlamaLoader.DenseWeights(source);
        int merged = 0;
        var entries = new List<TensorEntry>();
        foreach (var spec in LlamaTensorNames.All(config))
        {
            var path = spec.Name[..^".weight".Length];
            if (adapter.Tensors.TryGetValue(path + ".lora_A.weight", out var a) && adapter.Tensors.TryGetValue(path + ".lora_B.weight", out var b))
            {
                if (!a.shape.SequenceEqual([adapter.Config.Rank, spec.Shape[1]]) || !b.shape.SequenceEqual([spec.Shape[0], adapter.Config.Rank]))
                    throw new PeftAdapterException(
                        $"{adapterFolder}: the adapter of {path} is A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}]; the model's weight is [{string.Join(", ", spec.Shape)}]");
                merged++;
                entries.Add(new TensorEntry(spec.Name, outputDType, spec.Shape, () =>
                {
                    using var weight = BaseWeight(source, spec, dense);
                    return Merge(weight, a, b, adapter.Config.Scaling, outputDType);
                }));
            }
            else
            {
                entries.Add(new TensorEntry(spec.Name, outputDType, spec.Shape, () => BaseWeight(source, spec, dense)));
            }
        }

        var output = Path.GetFullPath(outputFolder);
        HfModelWriter.Write(output, entries, maxShardBytes);
        HfFolderFiles.RewriteConfig(source.Location, output, json =>
        {
            json.Remove("quantization_config");
            HfFolderFiles.SetDType(json, outputDType);
        });
        var copied = HfFolderFiles.CopyCompanions(source.Location, output);
        return new MergeResult(output, outputDType, merged, entries.Count, quantized, copied);
    }

    /// <summary>
    /// A base tensor in float32 (the writer casts it to the output dtype). A 4-bit one is dequantized to the dtype it was quantized from,
    /// as bitsandbytes' dequantize returns it, so the merge adds the update to the same numbers PEFT does.
    /// </summary>
    static Tensor BaseWeight(HfModelFolder source, LlamaTensorSpec spec, WeightFactory dense)
    {
        if (!Nf4Serialization.IsQuantized(source, spec.Name)) return dense(spec, ScalarType.Float32);
        using var quantized = Nf4Serialization.FromTensors(spec.Name, source);
        return Nf4Quantizer.Dequantize(quantized, quantized.DType);
    }
}
