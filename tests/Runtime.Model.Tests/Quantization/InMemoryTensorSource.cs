using Runtime.Model.IO;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

/// <summary>An <see cref="ITensorSource"/> over tensors in memory.</summary>
internal sealed class InMemoryTensorSource(string location, IEnumerable<(string Name, Tensor Tensor)> tensors) : ITensorSource
{
    private readonly Dictionary<string, Tensor> tensors = tensors.ToDictionary(t => t.Name, t => t.Tensor);

    public string Location => location;

    public IReadOnlyCollection<string> Names => tensors.Keys;

    public bool Contains(string name) => tensors.ContainsKey(name);

    public TensorInfo Describe(string name) => tensors.TryGetValue(name, out var t)
        ? new TensorInfo(name, t.dtype.ToString(), t.shape, location)
        : throw new TensorFileException($"{location}: no tensor '{name}'");

    public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null)
    {
        var t = tensors.TryGetValue(name, out var found) ? found : throw new TensorFileException($"{location}: no tensor '{name}'");
        return (dtype is { } d ? t.to(d) : t.clone()).DetachFromDisposeScope();
    }

    public void Remove(string name)
    {
        tensors.Remove(name, out var t);
        t?.Dispose();
    }

    public void Dispose()
    {
        foreach (var t in tensors.Values) t.Dispose();
    }
}
