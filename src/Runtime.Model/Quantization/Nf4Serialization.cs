using System.Text;
using Runtime.Model.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// The tensors transformers + bitsandbytes save for one 4-bit weight <c>W</c> (e.g.
/// <c>model.layers.0.self_attn.q_proj.weight</c>): bitsandbytes' <c>Linear4bit._save_to_state_dict</c> writes the packed
/// weight under <c>W</c> and each entry of <c>QuantState.as_dict(packed=True)</c> under <c>W.{key}</c>.
/// </summary>
public static class Nf4Serialization
{
    public const string AbsmaxSuffix = ".absmax";
    public const string QuantMapSuffix = ".quant_map";
    public const string NestedAbsmaxSuffix = ".nested_absmax";
    public const string NestedQuantMapSuffix = ".nested_quant_map";
    public const string QuantStateSuffix = ".quant_state.bitsandbytes__nf4";

    /// <summary>
    /// The named tensors in bitsandbytes' order: <c>W</c> (uint8 [(n+1)/2, 1]), <c>W.absmax</c> (uint8 codes, or float32
    /// without double quantization), <c>W.quant_map</c> (float32 [16]), <c>W.nested_absmax</c> (float32),
    /// <c>W.nested_quant_map</c> (float32 [256]), <c>W.quant_state.bitsandbytes__nf4</c> (uint8 JSON bytes).
    /// The caller owns the returned tensors; the large ones share storage with <paramref name="quantized"/>.
    /// </summary>
    public static IReadOnlyList<(string Name, Tensor Tensor)> ToTensors(string weightName, Nf4Tensor quantized)
    {
        var state = new Nf4QuantState(quantized.DType, quantized.Shape, quantized.Nested?.Offset);
        var json = state.ToJson(); // validates the dtype before anything is allocated
        var device = quantized.Packed.device;
        var result = new List<(string, Tensor)>
        {
            (weightName, quantized.Packed.alias()),
            (weightName + AbsmaxSuffix, quantized.Absmax.alias()),
            (weightName + QuantMapSuffix, Nf4Codebook.ValuesTensor(device).DetachFromDisposeScope()),
        };
        if (quantized.Nested is { } nested)
        {
            result.Add((weightName + NestedAbsmaxSuffix, nested.Absmax.alias()));
            result.Add((weightName + NestedQuantMapSuffix, nested.Code.clone().DetachFromDisposeScope()));
        }
        result.Add((weightName + QuantStateSuffix, tensor(Encoding.UTF8.GetBytes(json), device: device).DetachFromDisposeScope()));
        return result;
    }

    /// <summary>Every tensor name <see cref="ToTensors"/> writes for <paramref name="weightName"/>.</summary>
    public static IReadOnlyList<string> TensorNames(string weightName, bool doubleQuantized = true) => doubleQuantized
        ? [weightName, weightName + AbsmaxSuffix, weightName + QuantMapSuffix, weightName + NestedAbsmaxSuffix,
           weightName + NestedQuantMapSuffix, weightName + QuantStateSuffix]
        : [weightName, weightName + AbsmaxSuffix, weightName + QuantMapSuffix, weightName + QuantStateSuffix];

    /// <summary>Whether <paramref name="source"/> holds <paramref name="weightName"/> in bitsandbytes' 4-bit form.</summary>
    public static bool IsQuantized(ITensorSource source, string weightName) => source.Contains(weightName + QuantStateSuffix);

    /// <summary>Reads a 4-bit weight from a tensor file (errors name the tensor and the file).</summary>
    public static Nf4Tensor FromTensors(string weightName, ITensorSource source)
        => FromTensors(weightName, name => source.Contains(name) ? source.Load(name) : null, source.Location);

    /// <summary>
    /// Reassembles a 4-bit weight from its named tensors; <paramref name="load"/> returns null for an absent name.
    /// Throws <see cref="TensorFileException"/> naming the tensor when a piece is missing, has the wrong dtype or size,
    /// or disagrees with the quant state (quant_type other than nf4, blocksize other than 64, another code table).
    /// Takes ownership of the tensors <paramref name="load"/> returns.
    /// </summary>
    public static Nf4Tensor FromTensors(string weightName, Func<string, Tensor?> load, string? location = null)
    {
        var where = location is null ? "" : $"{location}: ";
        TensorFileException Error(string message) => new(where + message);
        var owned = new List<Tensor>();
        Tensor Require(string name)
        {
            var t = load(name) ?? throw Error($"tensor '{name}' is missing (a bitsandbytes 4-bit weight needs it)");
            owned.Add(t);
            return t;
        }
        void Check(Tensor t, string name, ScalarType dtype, long elements)
        {
            if (t.dtype != dtype || t.numel() != elements)
                throw Error($"tensor '{name}' is {t.dtype} [{string.Join(", ", t.shape)}], expected {dtype} with {elements} elements");
        }

        try
        {
            var stateName = weightName + QuantStateSuffix;
            var stateTensor = load(stateName);
            if (stateTensor is null)
            {
                var fp4 = load(weightName + ".quant_state.bitsandbytes__fp4");
                if (fp4 is not null)
                {
                    fp4.Dispose();
                    throw Error($"tensor '{weightName}' is quantized as bitsandbytes fp4; only nf4 is supported");
                }
                throw Error($"tensor '{stateName}' is missing (a bitsandbytes 4-bit weight needs it)");
            }
            owned.Add(stateTensor);
            if (stateTensor.dtype != ScalarType.Byte)
                throw Error($"tensor '{stateName}' is {stateTensor.dtype}, expected uint8 JSON bytes");
            Nf4QuantState state;
            try { state = Nf4QuantState.Parse(stateTensor.cpu().data<byte>().ToArray(), stateName); }
            catch (TensorFileException e) { throw Error(e.Message); }

            var n = state.Shape.Aggregate(1L, (a, b) => a * b);
            var blocks = Nf4Layout.BlockCount(n);
            var packed = Require(weightName);
            if (packed.dtype != ScalarType.Byte)
                throw Error($"tensor '{weightName}' is {packed.dtype}; only bnb_4bit_quant_storage uint8 is supported");
            Check(packed, weightName, ScalarType.Byte, Nf4Layout.PackedBytes(n));

            var quantMapName = weightName + QuantMapSuffix;
            var quantMap = Require(quantMapName);
            Check(quantMap, quantMapName, ScalarType.Float32, 16);
            if (!quantMap.cpu().data<float>().ToArray().SequenceEqual(Nf4Codebook.Values.ToArray()))
                throw Error($"tensor '{quantMapName}' is not the NF4 code table");

            var absmaxName = weightName + AbsmaxSuffix;
            var absmax = Require(absmaxName);
            Nf4NestedStatistics? nested = null;
            if (state.NestedOffset is { } offset)
            {
                Check(absmax, absmaxName, ScalarType.Byte, blocks);
                var nestedAbsmaxName = weightName + NestedAbsmaxSuffix;
                var nestedAbsmax = Require(nestedAbsmaxName);
                Check(nestedAbsmax, nestedAbsmaxName, ScalarType.Float32, Nf4Layout.NestedBlockCount(blocks));
                var nestedMapName = weightName + NestedQuantMapSuffix;
                var nestedMap = Require(nestedMapName);
                Check(nestedMap, nestedMapName, ScalarType.Float32, DynamicMap.Size);
                nested = new Nf4NestedStatistics(nestedAbsmax.reshape(-1), nestedMap.reshape(-1), offset);
            }
            else
            {
                Check(absmax, absmaxName, ScalarType.Float32, blocks);
                var strayName = weightName + NestedAbsmaxSuffix;
                var stray = load(strayName);
                if (stray is not null)
                {
                    owned.Add(stray);
                    throw Error($"tensor '{strayName}' exists but '{stateName}' has no nested_offset");
                }
            }

            var result = new Nf4Tensor(packed.reshape(Nf4Layout.PackedBytes(n), 1), absmax.reshape(-1), nested, state.Shape, state.DType);
            // The reshaped handles live on in the result; the loaded handles (and the small tables) can go.
            foreach (var t in owned) t.Dispose();
            return result;
        }
        catch
        {
            foreach (var t in owned) t.Dispose();
            throw;
        }
    }
}
