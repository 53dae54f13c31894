using Runtime.Model.Config;
using Runtime.Model.Quantization;
using Runtime.Model.TensorParallel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Produces one weight of a slice: a CPU (or any-device) tensor of exactly <see cref="LlamaTensorSpec.LocalShape"/> in
/// <paramref name="dtype"/>, which the slice then owns: the whole tensor, or, for a tensor-parallel slice, the part
/// <see cref="LlamaTensorSpec.Slice"/> of it. The loader reads it from a file, the initializer draws it, so modules are
/// built straight from their final values and no weight is allocated twice.
/// </summary>
public delegate Tensor WeightFactory(LlamaTensorSpec tensor, ScalarType dtype);

/// <summary>
/// Produces one projection weight of a slice in 4 bits, for a slice whose options ask for an NF4 base: read as stored
/// (a bitsandbytes-serialized folder) or quantized from the dense weight as it is loaded. Its shape is the dense one
/// (<see cref="LlamaTensorSpec.LocalShape"/>: a tensor-parallel part is quantized as a tensor of its own).
/// </summary>
public delegate Nf4Tensor Nf4WeightFactory(LlamaTensorSpec tensor);

/// <summary>
/// Hands the modules of one slice their parameters by Hugging Face name. The names and shapes a slice may ask for come
/// from <see cref="LlamaTensorNames.ForSlice"/> alone, so the module tree and the tensor list cannot drift apart.
/// </summary>
internal sealed class SliceWeights
{
    readonly Dictionary<string, LlamaTensorSpec> expected;
    readonly Dictionary<string, Parameter> taken = [];
    readonly HashSet<string> takenQuantized = [];
    readonly WeightFactory factory;
    readonly Nf4WeightFactory quantizedFactory;
    readonly LlamaModelOptions options;

    public SliceWeights(LlamaConfig config, LlamaSliceSpec slice, LlamaModelOptions options, WeightFactory factory,
        Nf4WeightFactory? quantizedFactory = null)
    {
        Shard = slice.TensorParallel;
        expected = LlamaTensorNames.ForSlice(config, slice).ToDictionary(t => t.Name);
        this.factory = factory;
        this.quantizedFactory = quantizedFactory ?? QuantizeAsLoaded;
        this.options = options;
    }

    /// <summary>The tensor-parallel shard the slice holds.</summary>
    public TensorParallelShard Shard { get; }

    /// <summary>
    /// The projection stored under <paramref name="weightName"/> (e.g. "model.layers.0.self_attn.q_proj.weight") with
    /// the base the options ask for: a dense parameter, or a frozen NF4 weight; the shard's part of it when the slice is
    /// tensor-parallel (<see cref="LlamaTensorNames.ParallelStyleOf"/>).
    /// </summary>
    public Projection TakeProjection(string weightName)
    {
        const string suffix = ".weight";
        if (!weightName.EndsWith(suffix, StringComparison.Ordinal))
            throw new InvalidOperationException($"'{weightName}' does not name a projection weight");
        var modulePath = weightName[..^suffix.Length];
        var style = LlamaTensorNames.ParallelStyleOf(weightName);
        if (options.ProjectionBase == ProjectionBase.Dense) return new Projection(modulePath, Take(weightName), style, Shard);

        var spec = Expected(weightName);
        if (!takenQuantized.Add(weightName))
            throw new InvalidOperationException($"the slice asked for '{weightName}' twice");
        var quantized = quantizedFactory(spec);
        if (!quantized.Shape.SequenceEqual(spec.LocalShape))
        {
            var got = $"[{string.Join(", ", quantized.Shape)}]";
            quantized.Dispose();
            throw new InvalidOperationException($"NF4 weight factory returned {got} for {spec}");
        }
        var module = new Nf4Weight(quantized);
        if (options.Device is { } device) module.to(device);
        return new Projection(modulePath, module, style, Shard);
    }

    /// <summary>The default 4-bit source: the dense weight in the activation dtype, quantized, then freed.</summary>
    Nf4Tensor QuantizeAsLoaded(LlamaTensorSpec spec)
    {
        using var dense = factory(spec, options.DType);
        return Nf4Quantizer.Quantize(dense);
    }

    LlamaTensorSpec Expected(string name) => expected.TryGetValue(name, out var spec)
        ? spec
        : throw new InvalidOperationException($"the slice asked for '{name}', which is not among its tensors");

    /// <summary>The parameter stored under <paramref name="name"/>; asking twice returns the same parameter (tying).</summary>
    public Parameter Take(string name)
    {
        if (taken.TryGetValue(name, out var existing)) return existing;
        var spec = Expected(name);

        var value = factory(spec, options.DType);
        if (!value.shape.SequenceEqual(spec.LocalShape) || value.dtype != options.DType)
        {
            var got = $"[{string.Join(", ", value.shape)}] {value.dtype}";
            value.Dispose();
            throw new InvalidOperationException(
                $"weight factory returned {got} for {spec}, expected [{string.Join(", ", spec.LocalShape)}] {options.DType}");
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
    public IEnumerable<string> Untaken => expected.Keys.Where(n => !taken.ContainsKey(n) && !takenQuantized.Contains(n));
}
