using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// The safetensors dtype names Runtime reads and writes, and how each maps to a TorchSharp <see cref="ScalarType"/>.
/// </summary>
public static class SafeTensorsDType
{
    /// <param name="Rank">
    /// Position in the reference implementation's <c>Dtype</c> enum, which is ordered by alignment. Its writer sorts
    /// tensors by descending rank, then by name, so every tensor starts at a multiple of its element size; the rank lets
    /// our writer lay files out byte for byte the same way.
    /// </param>
    sealed record Kind(string Name, ScalarType Type, int Size, int Rank);

    static readonly Kind[] Kinds =
    [
        new("BOOL", ScalarType.Bool, 1, 0),
        new("U8", ScalarType.Byte, 1, 4),
        new("I8", ScalarType.Int8, 1, 5),
        new("I16", ScalarType.Int16, 2, 11),
        new("F16", ScalarType.Float16, 2, 13),
        new("BF16", ScalarType.BFloat16, 2, 14),
        new("I32", ScalarType.Int32, 4, 15),
        new("F32", ScalarType.Float32, 4, 17),
        new("F64", ScalarType.Float64, 8, 19),
        new("I64", ScalarType.Int64, 8, 20),
    ];

    static readonly Dictionary<string, Kind> ByName = Kinds.ToDictionary(k => k.Name, StringComparer.Ordinal);
    static readonly Dictionary<ScalarType, Kind> ByType = Kinds.ToDictionary(k => k.Type);

    /// <summary>The names this reader understands, for error messages.</summary>
    public static IEnumerable<string> Names => Kinds.Select(k => k.Name);

    public static bool TryParse(string name, out ScalarType type)
    {
        var found = ByName.TryGetValue(name, out var kind);
        type = found ? kind!.Type : default;
        return found;
    }

    /// <summary>The safetensors name of <paramref name="type"/>; throws for types safetensors cannot hold here.</summary>
    public static string NameOf(ScalarType type) => Get(type).Name;

    /// <summary>Bytes per element of <paramref name="type"/>.</summary>
    public static int SizeOf(ScalarType type) => Get(type).Size;

    internal static int WriterRank(ScalarType type) => Get(type).Rank;

    static Kind Get(ScalarType type) => ByType.TryGetValue(type, out var kind)
        ? kind
        : throw new ArgumentException(
            $"{type} has no safetensors dtype Runtime writes (supported: {string.Join(" ", Names)})", nameof(type));
}
