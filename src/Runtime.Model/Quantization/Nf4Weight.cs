using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Quantization;

/// <summary>
/// A frozen NF4 weight as a module, for a projection to hold as its base weight: the packed codes and the statistics
/// are buffers (they move with the module's device and are never trained); <see cref="Dequantize"/> rebuilds the
/// dense weight in the compute dtype on every call, so only the 4-bit form stays resident.
/// </summary>
/// <remarks>
/// Module.to(dtype) leaves the buffers' dtypes alone: the codes are bytes and the statistics must stay float32 for the
/// numbers to match bitsandbytes; the compute dtype is chosen per <see cref="Dequantize"/> call instead.
/// </remarks>
public sealed class Nf4Weight : nn.Module
{
    // Field names are the buffer names (TorchSharp's RegisterComponents uses them and Module.to rebinds them).
    private Tensor packed;
    private Tensor absmax;
    private Tensor? nested_absmax;
    private Tensor? nested_quant_map;
    private readonly float nestedOffset;

    /// <summary>Takes ownership of <paramref name="quantized"/>'s tensors (do not dispose it separately).</summary>
    public Nf4Weight(Nf4Tensor quantized, string name = "nf4_weight") : base(name)
    {
        Shape = [.. quantized.Shape];
        OriginalDType = quantized.DType;
        packed = quantized.Packed.DetachFromDisposeScope();
        absmax = quantized.Absmax.DetachFromDisposeScope();
        nested_absmax = quantized.Nested?.Absmax.DetachFromDisposeScope();
        nested_quant_map = quantized.Nested?.Code.DetachFromDisposeScope();
        nestedOffset = quantized.Nested?.Offset ?? 0f;
        RegisterComponents();
    }

    /// <summary>Quantizes <paramref name="weight"/> (see <see cref="Nf4Quantizer.Quantize"/>).</summary>
    public static Nf4Weight FromDense(Tensor weight, bool doubleQuantize = true, string name = "nf4_weight")
        => new(Nf4Quantizer.Quantize(weight, doubleQuantize), name);

    /// <summary>The dense weight's shape, [out, in] for a linear layer.</summary>
    public long[] Shape { get; }

    /// <summary>The dtype the weight had before quantization (recorded in bitsandbytes' quant state).</summary>
    public ScalarType OriginalDType { get; }

    public bool IsDoubleQuantized => nested_absmax is not null;

    /// <summary>Bytes the module keeps resident for this weight.</summary>
    public long ResidentBytes => buffers().Sum(b => b.numel() * b.ElementSize);

    /// <summary>The dense weight, <c>nf4[code] * absmax</c> in float32 cast to <paramref name="computeDtype"/>; no gradient.</summary>
    public Tensor Dequantize(ScalarType computeDtype)
    {
        using var scope = NewDisposeScope();
        var blockAbsmax = nested_absmax is null
            ? absmax
            : DynamicBlockwiseQuantizer.Dequantize(absmax, nested_absmax, nested_quant_map!, Nf4NestedStatistics.BlockSize).add_(nestedOffset);
        return Nf4Quantizer.Dequantize(packed, blockAbsmax, Shape, computeDtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// An <see cref="Nf4Tensor"/> sharing this module's storage (for serialization); the caller disposes it, which
    /// releases only its own handles.
    /// </summary>
    public Nf4Tensor ToNf4Tensor()
    {
        var nested = nested_absmax is null
            ? null
            : new Nf4NestedStatistics(nested_absmax.alias(), nested_quant_map!.alias(), nestedOffset);
        return new Nf4Tensor(packed.alias(), absmax.alias(), nested, Shape, OriginalDType);
    }

    // Device moves go through; dtype changes are ignored (see remarks).
    protected override nn.Module _to(ScalarType dtype, bool non_blocking) => this;

    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
        => _to(device.type, device.index, non_blocking);
}
