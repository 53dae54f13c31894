using Runtime.Model.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Llama;

/// <summary>
/// An in-memory <see cref="ITensorSource"/> over fp32 arrays, standing in for a Hugging Face folder in tests. It records
/// which tensors were loaded so tests can check that a slice reads only its own.
/// </summary>
public sealed class DictionaryTensorSource(IReadOnlyDictionary<string, (float[] Data, long[] Shape)> tensors, string location = "memory")
    : ITensorSource
{
    readonly List<string> loaded = [];

    public string Location { get; } = location;

    public IReadOnlyCollection<string> Names => tensors.Keys.ToList();

    public IReadOnlyList<string> LoadedNames => loaded;

    public bool Contains(string name) => tensors.ContainsKey(name);

    public TensorInfo Describe(string name) =>
        tensors.TryGetValue(name, out var t)
            ? new TensorInfo(name, "F32", t.Shape, Location)
            : throw new TensorFileException($"{Location}: no tensor '{name}'");

    public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null)
    {
        var info = Describe(name);
        loaded.Add(name);
        using var scope = NewDisposeScope();
        var full = tensor(tensors[name].Data, info.Shape);
        var part = slice is { } s ? full.narrow(s.Dim, s.Start, s.Length).contiguous() : full;
        return (dtype is { } d ? part.to(d) : part.clone()).MoveToOuterDisposeScope();
    }

    public void Dispose() { }
}
