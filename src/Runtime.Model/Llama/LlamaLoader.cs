using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Quantization;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>Builds a slice from stored weights (a Hugging Face folder, a checkpoint), reading only its own tensors.</summary>
public static class LlamaLoader
{
    /// <summary>
    /// Loads the tensors <paramref name="slice"/> needs (default: the whole model) from <paramref name="source"/>,
    /// checking each one's shape and converting it to the options' dtype. Every missing tensor is named at once.
    /// <para>
    /// The source may hold dense weights or bitsandbytes 4-bit ones (a folder written by <c>rt quantize</c> or by
    /// transformers + bitsandbytes; recognised per tensor by its <c>.quant_state.bitsandbytes__nf4</c> entry). With
    /// <see cref="LlamaModelOptions.ProjectionBase"/> = NF4 (QLoRA) the projections keep 4-bit bases: stored 4-bit
    /// weights are taken as they are, dense ones are loaded one at a time in the options' dtype, quantized and freed.
    /// With a dense base, stored 4-bit weights are dequantized to the options' dtype.
    /// </para>
    /// </summary>
    public static LlamaSlice Load(ITensorSource source, LlamaConfig config, LlamaSliceSpec? slice = null,
        LlamaModelOptions? options = null)
    {
        var spec = (slice ?? LlamaSliceSpec.Whole(config)).Validate(config);
        var needed = LlamaTensorNames.ForSlice(config, spec).ToList();
        var missing = needed.Where(t => !source.Contains(t.Name)).Select(t => t.Name).ToList();
        if (missing.Count > 0)
        {
            var hint = missing.Contains(LlamaTensorNames.LmHead) && !config.TieWordEmbeddings
                ? " (the config says tie_word_embeddings = false, so lm_head.weight must be stored)"
                : "";
            throw new TensorFileException(
                $"{source.Location}: missing {missing.Count} tensor(s) for {spec}{hint}: {string.Join(", ", missing)}");
        }
        var resolved = options ?? LlamaModelOptions.Default;
        return LlamaSlice.Build(config, spec, resolved, DenseWeights(source), QuantizedWeights(source, resolved.DType));
    }

    /// <summary>Stored tensors as dense weights: 4-bit ones dequantized (in float32, then cast to the dtype).</summary>
    public static WeightFactory DenseWeights(ITensorSource source) => (tensor, dtype) =>
    {
        if (!Nf4Serialization.IsQuantized(source, tensor.Name))
            return source.LoadExpecting(tensor.Name, tensor.Shape, dtype);
        using var quantized = ReadQuantized(source, tensor);
        return Nf4Quantizer.Dequantize(quantized, dtype);
    };

    /// <summary>Stored tensors as 4-bit weights: read as stored, or loaded in <paramref name="quantizeFrom"/> and quantized.</summary>
    public static Nf4WeightFactory QuantizedWeights(ITensorSource source, ScalarType quantizeFrom) => tensor =>
    {
        if (Nf4Serialization.IsQuantized(source, tensor.Name)) return ReadQuantized(source, tensor);
        using var dense = source.LoadExpecting(tensor.Name, tensor.Shape, quantizeFrom);
        return Nf4Quantizer.Quantize(dense);
    };

    static Nf4Tensor ReadQuantized(ITensorSource source, LlamaTensorSpec tensor)
    {
        var quantized = Nf4Serialization.FromTensors(tensor.Name, source);
        if (quantized.Shape.SequenceEqual(tensor.Shape)) return quantized;
        var stored = string.Join(", ", quantized.Shape);
        quantized.Dispose();
        throw new TensorFileException(
            $"{source.Location}: 4-bit tensor '{tensor.Name}' has shape [{stored}], expected [{string.Join(", ", tensor.Shape)}]");
    }
}
