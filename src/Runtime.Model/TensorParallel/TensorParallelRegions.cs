using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Runtime.Model.TensorParallel;

/// <summary>
/// Megatron's two communication points of a tensor-parallel block, as autograd functions.
/// <list type="bullet">
/// <item><see cref="CopyToRegion"/> goes before column-parallel projections (q, k, v; gate, up): the forward hands the
/// replicated input on unchanged; the backward all-reduces the input's gradient, because each rank's projections only
/// saw their own output columns and so produced part of it.</item>
/// <item><see cref="ReduceFromRegion"/> goes after row-parallel projections (o, down): the forward all-reduces the
/// ranks' partial outputs into the full one; the backward passes the (replicated) gradient on unchanged, since every
/// rank's partial output contributed to the sum with weight one.</item>
/// </list>
/// One copy region serves every projection that reads the same input (q, k and v; gate and up), so their gradients
/// are summed locally first and reduced once. Both work under no_grad too (inference, recompute's first forward):
/// then only the forward's all-reduce happens.
/// </summary>
public static class TensorParallelRegions
{
    /// <summary>Identity forward; all-reduce of the gradient in the backward.</summary>
    public static Tensor CopyToRegion(Tensor input, ITensorParallelGroup group) => CopyToTensorParallelRegion.apply(input, group);

    /// <summary>All-reduce of the partial outputs in the forward; identity backward.</summary>
    public static Tensor ReduceFromRegion(Tensor partial, ITensorParallelGroup group) => ReduceFromTensorParallelRegion.apply(partial, group);

    internal const string GroupKey = "group";

    /// <summary>A contiguous copy the group may overwrite (the gradient autograd hands in is not ours to change).</summary>
    internal static Tensor OwnContiguousCopy(Tensor t)
    {
        var copy = t.clone();
        return copy.is_contiguous() ? copy : copy.contiguous();
    }

    internal static ITensorParallelGroup GroupOf(object[] vars, string function) =>
        vars.Length == 2 && vars[1] is ITensorParallelGroup group
            ? group
            : throw new ArgumentException($"{function} takes (tensor, ITensorParallelGroup)");
}

/// <summary>Megatron's copy-to-tensor-model-parallel-region (see <see cref="TensorParallelRegions.CopyToRegion"/>).</summary>
public sealed class CopyToTensorParallelRegion : SingleTensorFunction<CopyToTensorParallelRegion>
{
    public override string Name => nameof(CopyToTensorParallelRegion);

    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        ctx.save_data(TensorParallelRegions.GroupKey, TensorParallelRegions.GroupOf(vars, Name));
        // A fresh handle on the same values: autograd makes the output a view of the input with this node as its grad_fn.
        return ((Tensor)vars[0]).alias();
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output)
    {
        var group = (ITensorParallelGroup)ctx.get_data(TensorParallelRegions.GroupKey);
        var sum = TensorParallelRegions.OwnContiguousCopy(grad_output);
        group.AllReduceSumInPlace(sum);
        return [sum, null!];
    }
}

/// <summary>Megatron's reduce-from-tensor-model-parallel-region (see <see cref="TensorParallelRegions.ReduceFromRegion"/>).</summary>
public sealed class ReduceFromTensorParallelRegion : SingleTensorFunction<ReduceFromTensorParallelRegion>
{
    public override string Name => nameof(ReduceFromTensorParallelRegion);

    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var group = TensorParallelRegions.GroupOf(vars, Name);
        var sum = TensorParallelRegions.OwnContiguousCopy((Tensor)vars[0]);
        group.AllReduceSumInPlace(sum);
        return sum;
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor grad_output) => [grad_output, null!];
}
