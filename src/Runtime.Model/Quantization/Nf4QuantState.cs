using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// The non-tensor part of bitsandbytes' quant state, which it stores as the UTF-8 bytes of a JSON object in the uint8
/// tensor <c>W.quant_state.bitsandbytes__nf4</c> (<c>QuantState.as_dict(packed=True)</c> + <c>pack_dict_to_tensor</c>).
/// </summary>
/// <param name="DType">The original weight dtype (<c>"dtype"</c>: bfloat16, float16 or float32).</param>
/// <param name="Shape">The original weight shape (<c>"shape"</c>).</param>
/// <param name="NestedOffset">The mean of the absmax values when double-quantized (<c>"nested_offset"</c>), else null.</param>
public sealed record Nf4QuantState(ScalarType DType, long[] Shape, float? NestedOffset)
{
    public const string QuantType = "nf4";

    /// <summary>
    /// The JSON as Python's <c>json.dumps</c> writes bitsandbytes' dict: keys in its insertion order, ", " and ": "
    /// separators, the offset as Python's float repr.
    /// </summary>
    public string ToJson()
    {
        var json = new StringBuilder();
        json.Append("{\"quant_type\": \"").Append(QuantType).Append('"');
        json.Append(", \"blocksize\": ").Append(Nf4Codebook.BlockSize.ToString(CultureInfo.InvariantCulture));
        json.Append(", \"dtype\": \"").Append(TorchDTypeName(DType)).Append('"');
        json.Append(", \"shape\": [").Append(string.Join(", ", Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))).Append(']');
        if (NestedOffset is { } offset)
        {
            json.Append(", \"nested_blocksize\": ").Append(Nf4NestedStatistics.BlockSize.ToString(CultureInfo.InvariantCulture));
            json.Append(", \"nested_dtype\": \"float32\"");
            // bitsandbytes writes offset.item(): the float32 widened to a double.
            json.Append(", \"nested_offset\": ").Append(PythonFloat.Repr(offset));
        }
        return json.Append('}').ToString();
    }

    /// <summary>Parses and checks the JSON; errors name <paramref name="tensorName"/>.</summary>
    public static Nf4QuantState Parse(byte[] utf8, string tensorName)
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(utf8) as JsonObject
                ?? throw new TensorFileException($"tensor '{tensorName}' does not hold a JSON object");
        }
        catch (JsonException e)
        {
            throw new TensorFileException($"tensor '{tensorName}' does not hold valid JSON: {e.Message}");
        }

        TensorFileException Bad(string key, string why) => new($"tensor '{tensorName}': \"{key}\" {why}");
        JsonNode Required(string key) => obj[key] ?? throw Bad(key, "is missing");
        long Integer(JsonNode node, string key) =>
            node is JsonValue v && v.TryGetValue<long>(out var x) ? x : throw Bad(key, $"must be an integer, got {node.ToJsonString()}");
        string Text(string key) =>
            Required(key) is JsonValue v && v.TryGetValue<string>(out var s) ? s : throw Bad(key, "must be a string");

        var quantType = Text("quant_type");
        if (quantType != QuantType) throw Bad("quant_type", $"is '{quantType}'; only '{QuantType}' is supported");
        var blockSize = Integer(Required("blocksize"), "blocksize");
        if (blockSize != Nf4Codebook.BlockSize) throw Bad("blocksize", $"is {blockSize}; only {Nf4Codebook.BlockSize} is supported");
        var dtypeName = Text("dtype");
        var dtype = ParseTorchDType(dtypeName) ?? throw Bad("dtype", $"is '{dtypeName}'; expected bfloat16, float16 or float32");
        if (Required("shape") is not JsonArray shapeArray || shapeArray.Count == 0)
            throw Bad("shape", "must be a non-empty list of dimensions");
        var shape = shapeArray.Select(d => d is null ? throw Bad("shape", "holds null") : Integer(d, "shape")).ToArray();
        if (shape.Any(d => d <= 0)) throw Bad("shape", $"[{string.Join(", ", shape)}] must have positive dimensions");

        float? offset = null;
        if (obj.ContainsKey("nested_offset") || obj.ContainsKey("nested_blocksize") || obj.ContainsKey("nested_dtype"))
        {
            var nestedBlockSize = Integer(Required("nested_blocksize"), "nested_blocksize");
            if (nestedBlockSize != Nf4NestedStatistics.BlockSize)
                throw Bad("nested_blocksize", $"is {nestedBlockSize}; only {Nf4NestedStatistics.BlockSize} is supported");
            var nestedDType = Text("nested_dtype");
            if (nestedDType != "float32") throw Bad("nested_dtype", $"is '{nestedDType}'; only float32 is supported");
            offset = Required("nested_offset") is JsonValue v && v.TryGetValue<double>(out var o)
                ? (float)o
                : throw Bad("nested_offset", "must be a number");
        }
        return new Nf4QuantState(dtype, shape, offset);
    }

    /// <summary>torch's dtype name as bitsandbytes and transformers write it (<c>str(torch.bfloat16)</c> without "torch.").</summary>
    public static string TorchDTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float32 => "float32",
        _ => throw new ArgumentException($"bitsandbytes records only bfloat16, float16 or float32 weights, not {dtype}", nameof(dtype)),
    };

    public static ScalarType? ParseTorchDType(string name) => name switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "float32" => ScalarType.Float32,
        _ => null,
    };
}
