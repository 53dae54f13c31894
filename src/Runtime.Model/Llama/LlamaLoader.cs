using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Quantization;
using Runtime.Model.TensorParallel;
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
    /// <para>
    /// A tensor-parallel slice (with its rank's <paramref name="tensorParallel"/> group member) reads only its shard's
    /// rows or columns of each split projection (<see cref="ITensorSource.Load"/> with a slice) and the replicated
    /// tensors whole. Its NF4 bases are its parts quantized as tensors of their own (blocks of 64 along the flattened
    /// part, statistics double-quantized per part), which differ from the full tensor's blocks only in the
    /// double-quantized absmax values when the part's boundaries fall on block boundaries. A 4-bit folder holds
    /// full-tensor blocks, so a part of a stored 4-bit weight is the full weight dequantized in float32, cut, and
    /// quantized again (same codes where blocks align; the absmax statistics re-quantized); with a dense base it is the
    /// full weight dequantized to the dtype and cut, exactly the unsplit model's values.
    /// </para>
    /// </summary>
    public static LlamaSlice Load(ITensorSource source, LlamaConfig config, LlamaSliceSpec? slice = null,
        LlamaModelOptions? options = null, ITensorParallelGroup? tensorParallel = null)
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
        return LlamaSlice.Build(config, spec, resolved, DenseWeights(source), QuantizedWeights(source, resolved.DType), tensorParallel);
    }

    /// <summary>
    /// Stored tensors (or the part <see cref="LlamaTensorSpec.Slice"/> asks for) as dense weights: 4-bit ones
    /// dequantized (in float32, then cast to the dtype) whole, then cut.
    /// </summary>
    public static WeightFactory DenseWeights(ITensorSource source) => (tensor, dtype) =>
    {
        if (!Nf4Serialization.IsQuantized(source, tensor.Name))
            return source.LoadExpecting(tensor.Name, tensor.Shape, dtype, tensor.Slice);
        using var quantized = ReadQuantized(source, tensor);
        if (tensor.Slice is not { } part) return Nf4Quantizer.Dequantize(quantized, dtype);
        using var scope = NewDisposeScope();
        return Nf4Quantizer.Dequantize(quantized, dtype).narrow(part.Dim, part.Start, part.Length).contiguous().MoveToOuterDisposeScope();
    };

    /// <summary>
    /// Stored tensors as 4-bit weights: read as stored, or loaded in <paramref name="quantizeFrom"/> and quantized; a
    /// tensor-parallel part is quantized on its own (from the dense part, or from a stored 4-bit weight's dequantized
    /// part; see <see cref="Load"/>).
    /// </summary>
    public static Nf4WeightFactory QuantizedWeights(ITensorSource source, ScalarType quantizeFrom) => tensor =>
    {
        if (Nf4Serialization.IsQuantized(source, tensor.Name))
        {
            var stored = ReadQuantized(source, tensor);
            if (tensor.Slice is not { } part) return stored;
            using (stored) return QuantizePart(stored, part);
        }
        using var dense = source.LoadExpecting(tensor.Name, tensor.Shape, quantizeFrom, tensor.Slice);
        return Nf4Quantizer.Quantize(dense);
    };

    /// <summary>
    /// A part of a stored 4-bit weight as a 4-bit tensor of its own: the full weight dequantized in float32 (its exact
    /// NF4 values), cut, and quantized again with the same double quantization; it keeps the stored original dtype.
    /// </summary>
    static Nf4Tensor QuantizePart(Nf4Tensor stored, TensorSlice part)
    {
        using var scope = NewDisposeScope();
        var values = Nf4Quantizer.Dequantize(stored, ScalarType.Float32).narrow(part.Dim, part.Start, part.Length).contiguous();
        var requantized = Nf4Quantizer.Quantize(values, stored.IsDoubleQuantized);
        var result = new Nf4Tensor(requantized.Packed, requantized.Absmax, requantized.Nested, requantized.Shape, stored.DType);
        result.Packed.MoveToOuterDisposeScope();
        result.Absmax.MoveToOuterDisposeScope();
        result.Nested?.Absmax.MoveToOuterDisposeScope();
        result.Nested?.Code.MoveToOuterDisposeScope();
        return result;
    }

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
