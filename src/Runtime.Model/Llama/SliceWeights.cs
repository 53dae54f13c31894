using Runtime.Model.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Produces one weight of a slice: a CPU (or any-device) tensor of exactly <see cref="LlamaTensorSpec.Shape"/> in
/// <paramref name="dtype"/>, which the slice then owns. The loader reads it from a file, the initializer draws it, so
/// modules are built straight from their final values and no weight is allocated twice.
/// </summary>
public delegate Tensor WeightFactory(LlamaTensorSpec tensor, ScalarType dtype);

/// <summary>
/// Hands the modules of one slice their parameters by Hugging Face name. The names and shapes a slice may ask for come
/// from <see cref="LlamaTensorNames.ForSlice"/> alone, so the module tree and the tensor list cannot drift apart.
/// </summary>
internal sealed class SliceWeights
{
    readonly Dictionary<string, LlamaTensorSpec> expected;
    readonly Dictionary<string, Parameter> taken = [];
    readonly WeightFactory factory;
    readonly LlamaModelOptions options;

    public SliceWeights(LlamaConfig config, LlamaSliceSpec slice, LlamaModelOptions options, WeightFactory factory)
    {
        expected = LlamaTensorNames.ForSlice(config, slice).ToDictionary(t => t.Name);
        this.factory = factory;
        this.options = options;
    }

    /// <summary>The parameter stored under <paramref name="name"/>; asking twice returns the same parameter (tying).</summary>
    public Parameter Take(string name)
    {
        if (taken.TryGetValue(name, out var existing)) return existing;
        if (!expected.TryGetValue(name, out var spec))
            throw new InvalidOperationException($"the slice asked for '{name}', which is not among its tensors");

        var value = factory(spec, options.DType);
        if (!value.shape.SequenceEqual(spec.Shape) || value.dtype != options.DType)
        {
            var got = $"[{string.Join(", ", value.shape)}] {value.dtype}";
            value.Dispose();
            throw new InvalidOperationException($"weight factory returned {got} for {spec}, expected {options.DType}");
        }
        if (options.Device is { } device && value.device != device)
        {
            var moved = value.to(device);
            value.Dispose();
            value = moved;
        }
        // The parameter takes over the tensor's native handle (no copy) and must outlive any dispose scope that
        // happens to be open while the model is built.
        var parameter = new Parameter(value, options.RequiresGrad);
        parameter.DetachFromDisposeScope();
        taken[name] = parameter;
        return parameter;
    }

    /// <summary>Names the slice should have asked for but did not: a module tree out of step with the tensor list.</summary>
    public IEnumerable<string> Untaken => expected.Keys.Where(n => !taken.ContainsKey(n));
}
