using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Optim;

/// <summary>
/// fp32 master copies of low-precision (bf16) trainable weights, for full fine-tuning with bf16 compute: the forward and
/// backward run on the bf16 weights, the optimizer (and the clipper) work on the fp32 masters, and the updated masters
/// are rounded back into the bf16 weights. Per step:
/// <code>
/// foreach micro-batch: forward/backward on the bf16 model; master.AccumulateGradients();
/// clip and step the optimizer over master.Parameters; master.CopyToModel(); master.ZeroGrad();
/// </code>
/// </summary>
/// <remarks>
/// Gradients are moved into fp32 after every micro-batch so that accumulation happens in fp32 (as with HF's fp32
/// weights under bf16 autocast), not in bf16. The masters start as exact fp32 copies of the bf16 values. They are the
/// trainable state a checkpoint must keep (the bf16 weights follow from them); they carry the same canonical names.
/// </remarks>
public sealed class MasterWeights : IDisposable
{
    private readonly List<(string Name, Tensor Model, Tensor Master)> _entries = [];
    private bool _disposed;

    /// <param name="modelParameters">The compute weights (any floating dtype; bf16 in practice), by canonical name.</param>
    public MasterWeights(IEnumerable<(string Name, Tensor Parameter)> modelParameters)
    {
        ArgumentNullException.ThrowIfNull(modelParameters);
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (name, parameter) in modelParameters)
        {
            ArgumentNullException.ThrowIfNull(parameter, $"parameter '{name}'");
            if (!names.Add(name)) throw new ArgumentException($"parameter '{name}' is given twice", nameof(modelParameters));
            if (!parameter.is_floating_point())
                throw new ArgumentException($"parameter '{name}' is {parameter.dtype}, not a floating-point weight", nameof(modelParameters));
            var master = parameter.detach().to(ScalarType.Float32, copy: true).requires_grad_(true);
            _entries.Add((name, parameter, master.DetachFromDisposeScope()));
        }
        Parameters = _entries.Select(e => (e.Name, e.Master)).ToList();
    }

    /// <summary>The fp32 masters (leaf tensors that require grad), by canonical name: give these to AdamW and the clipper.</summary>
    public IReadOnlyList<(string Name, Tensor Parameter)> Parameters { get; }

    /// <summary>Bytes of the fp32 masters (their gradients not included).</summary>
    public long Bytes => _entries.Sum(e => e.Master.NumberOfElements * e.Master.ElementSize);

    /// <summary>
    /// Adds each model weight's gradient, converted to fp32, to its master's gradient and drops the model weight's
    /// gradient (so the next backward starts from none). Call after every micro-batch's backward, or once per step.
    /// Model weights without a gradient are skipped.
    /// </summary>
    public void AccumulateGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (_, model, master) in _entries)
        {
            var grad = model.grad;
            if (grad is null) continue;
            var existing = master.grad;
            if (existing is null)
                master.grad = grad.to(ScalarType.Float32, copy: true);
            else
                existing.add_(grad.to(ScalarType.Float32));
            model.grad = null;
        }
    }

    /// <summary>Writes the masters into the model weights, rounding to the model's dtype (round to nearest even).</summary>
    public void CopyToModel()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (_, model, master) in _entries) model.copy_(master);
    }

    /// <summary>Drops the masters' gradients (after the optimizer step).</summary>
    public void ZeroGrad()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var (_, _, master) in _entries) master.grad = null;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var (_, _, master) in _entries) master.Dispose();
    }
}
