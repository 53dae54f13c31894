using Runtime.Model.IO;
using Runtime.Model.Llama;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// What <see cref="Nf4ModelQuantizer.QuantizeFolder"/> wrote. <see cref="QuantizedBytes"/> is measured from the
/// written files (every tensor bitsandbytes stores for a 4-bit weight, headers excluded).
/// </summary>
public sealed record QuantizeResult(string Output, int QuantizedWeights, long QuantizedParameters, long QuantizedBytes,
    int DenseTensors, IReadOnlyList<string> CopiedFiles)
{
    public double BytesPerQuantizedParameter => (double)QuantizedBytes / QuantizedParameters;
}

/// <summary>
/// Writes a dense Llama folder as transformers + bitsandbytes save a 4-bit QLoRA model: the seven projections of every
/// layer as NF4 with double quantization (the tensors of <see cref="Nf4Serialization"/>), quantized from their bf16
/// values as <c>from_pretrained(torch_dtype=bfloat16, quantization_config=...)</c> does; embed_tokens, the norms and
/// lm_head kept in bf16; config.json with <c>quantization_config</c> and dtype bfloat16; tokenizer files copied.
/// </summary>
public static class Nf4ModelQuantizer
{
    /// <summary>The compute and storage dtype of everything that is not quantized.</summary>
    public static ScalarType DType => BitsAndBytesConfig.QLoRA.ComputeDType;

    /// <summary>
    /// Streams the model: one weight is held (dense while quantizing, then 4-bit) at a time. The safetensors header needs
    /// every tensor's size before any data, and the quant state's JSON length depends on each weight's offset, so each
    /// weight is quantized once to lay out the files and again when its bytes are due (quantizing is deterministic).
    /// </summary>
    public static QuantizeResult QuantizeFolder(string modelFolder, string outputFolder, long maxShardBytes = HfModelWriter.DefaultMaxShardBytes)
    {
        HfFolderFiles.CheckDistinct(outputFolder, modelFolder);
        using var source = new HfModelFolder(modelFolder);
        if (BitsAndBytesConfig.FromModelFolder(source.Location) is not null
            || source.Names.Any(n => n.EndsWith(Nf4Serialization.QuantStateSuffix, StringComparison.Ordinal)))
            throw new TensorFileException($"{source.Location}: the model is already quantized (bitsandbytes 4-bit)");
        var config = source.Config;

        using var cache = new QuantizedWeightCache(source);
        var entries = new List<TensorEntry>();
        var quantizedNames = new List<string>();
        long quantizedParameters = 0;
        int quantizedWeights = 0, denseTensors = 0;
        foreach (var spec in LlamaTensorNames.All(config))
        {
            if (!IsLayerProjection(spec))
            {
                denseTensors++;
                entries.Add(new TensorEntry(spec.Name, DType, spec.Shape, () => source.LoadExpecting(spec.Name, spec.Shape, DType)));
                continue;
            }
            quantizedWeights++;
            quantizedParameters += spec.ElementCount;
            foreach (var (name, tensor) in cache.Serialized(spec))
            {
                using (tensor)
                {
                    var weightName = spec;
                    var pieceName = name;
                    entries.Add(new TensorEntry(name, tensor.dtype, tensor.shape, () => cache.Piece(weightName, pieceName)));
                }
                quantizedNames.Add(name);
            }
        }

        var output = Path.GetFullPath(outputFolder);
        HfModelWriter.Write(output, entries, maxShardBytes);
        HfFolderFiles.RewriteConfig(source.Location, output, json =>
        {
            json["quantization_config"] = BitsAndBytesConfig.QLoRA.ToJson();
            HfFolderFiles.SetDType(json, DType);
        });
        var copied = HfFolderFiles.CopyCompanions(source.Location, output);

        long quantizedBytes;
        using (var written = new HfModelFolder(output))
            quantizedBytes = quantizedNames.Sum(n =>
            {
                var info = written.Describe(n);
                SafeTensorsDType.TryParse(info.DType, out var type);
                return info.ElementCount * SafeTensorsDType.SizeOf(type);
            });
        return new QuantizeResult(output, quantizedWeights, quantizedParameters, quantizedBytes, denseTensors, copied);
    }

    /// <summary>The seven projections of a decoder layer (QLoRA quantizes these; never embeddings, norms or the head).</summary>
    public static bool IsLayerProjection(LlamaTensorSpec spec) =>
        spec.Shape.Length == 2 && spec.Name.StartsWith("model.layers.", StringComparison.Ordinal);

    /// <summary>The last weight quantized, so the pieces of one weight written in a row quantize it once.</summary>
    sealed class QuantizedWeightCache(ITensorSource source) : IDisposable
    {
        string? name;
        Nf4Tensor? quantized;

        Nf4Tensor Get(LlamaTensorSpec spec)
        {
            if (name == spec.Name && quantized is not null) return quantized;
            quantized?.Dispose();
            quantized = null;
            using (var dense = source.LoadExpecting(spec.Name, spec.Shape, DType))
                quantized = Nf4Quantizer.Quantize(dense);
            // The writer produces each tensor inside its own dispose scope; the cached weight must outlive it.
            quantized.Packed.DetachFromDisposeScope();
            quantized.Absmax.DetachFromDisposeScope();
            quantized.Nested?.Absmax.DetachFromDisposeScope();
            quantized.Nested?.Code.DetachFromDisposeScope();
            name = spec.Name;
            return quantized;
        }

        /// <summary>All serialized tensors of a weight (the caller disposes them).</summary>
        public IReadOnlyList<(string Name, Tensor Tensor)> Serialized(LlamaTensorSpec spec) =>
            Nf4Serialization.ToTensors(spec.Name, Get(spec));

        /// <summary>One serialized tensor of a weight, for the writer to dispose.</summary>
        public Tensor Piece(LlamaTensorSpec spec, string piece)
        {
            Tensor? result = null;
            foreach (var (n, t) in Serialized(spec))
            {
                if (n == piece) result = t;
                else t.Dispose();
            }
            return result ?? throw new InvalidOperationException($"bitsandbytes serialization of {spec.Name} has no '{piece}'");
        }

        public void Dispose() => quantized?.Dispose();
    }
}
