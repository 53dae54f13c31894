using Runtime.Model.IO;
using Runtime.Model.Lora;
using Runtime.Model.Quantization;
using Runtime.Model.TensorParallel;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// A bias-free linear map <c>y = x W^T</c> with <c>W</c> of shape [out, in], as every Llama projection (and the LM head)
/// is, with an optional LoRA adapter. The base weight is either dense (<c>weight</c>: trainable for full fine-tuning,
/// frozen for LoRA) or NF4 (<c>nf4_weight</c>: frozen 4-bit codes, dequantized to the activation dtype for each matmul,
/// so it never gets a gradient while the input does). The adapter adds <c>lora_B(lora_A(dropout(x))) * scaling</c>
/// with <c>lora_A.weight</c> [r, in] and <c>lora_B.weight</c> [out, r] in fp32, as PEFT keeps them.
/// <para>
/// Parameter names, under the slice's module tree: <c>model.layers.3.self_attn.q_proj.weight</c> (dense base),
/// <c>model.layers.3.self_attn.q_proj.lora_A.weight</c>, <c>....lora_B.weight</c>. PEFT's adapter file names the same
/// tensors <c>base_model.model.</c> + that name (see <see cref="PeftAdapter"/>).
/// </para>
/// <para>
/// Under tensor parallelism a projection holds one rank's part (<see cref="ParallelStyle"/>): column-parallel, its
/// output rows [out/t, in], with lora_A [r, in] whole and lora_B [out/t, r] its rows; row-parallel, its input columns
/// [out, in/t], with lora_A [r, in/t] its columns and lora_B [out, r] whole, so that each rank's partial output
/// <c>x_s W_s^T + scaling * B (A_s x_s)</c> sums over the ranks to the full projection. The regions that join the
/// ranks are the caller's (<see cref="LlamaAttention"/>, <see cref="LlamaMlp"/>): a projection computes only its part.
/// </para>
/// </summary>
public sealed class Projection : nn.Module<Tensor, Tensor>
{
    // Field names are the state_dict names; exactly one base is set, and the adapter fields only after AttachLora.
    readonly Parameter? weight;
    readonly Nf4Weight? nf4_weight;
    LoraMatrix? lora_A;
    LoraMatrix? lora_B;

    /// <summary>
    /// A dense base: <paramref name="weight"/> [out, in] in the activation dtype, or, for a tensor-parallel
    /// <paramref name="style"/>, the part of it shard <paramref name="shard"/> holds.
    /// </summary>
    public Projection(string modulePath, Parameter weight,
        TensorParallelStyle style = TensorParallelStyle.Replicated, TensorParallelShard? shard = null) : base(nameof(Projection))
    {
        if (weight.dim() != 2)
            throw new ArgumentException($"{modulePath}: a projection weight is [out, in]; got [{string.Join(", ", weight.shape)}]");
        ModulePath = modulePath;
        this.weight = weight;
        OutFeatures = weight.shape[0];
        InFeatures = weight.shape[1];
        (ParallelStyle, TensorParallel) = Split(style, shard);
        RegisterComponents();
    }

    /// <summary>A frozen 4-bit base (QLoRA), whole or one tensor-parallel part (quantized as a tensor of its own).</summary>
    public Projection(string modulePath, Nf4Weight weight,
        TensorParallelStyle style = TensorParallelStyle.Replicated, TensorParallelShard? shard = null) : base(nameof(Projection))
    {
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"{modulePath}: a projection weight is [out, in]; got [{string.Join(", ", weight.Shape)}]");
        ModulePath = modulePath;
        nf4_weight = weight;
        OutFeatures = weight.Shape[0];
        InFeatures = weight.Shape[1];
        (ParallelStyle, TensorParallel) = Split(style, shard);
        RegisterComponents();
    }

    /// <summary>Without a split (size 1) a projection is whole whatever its style: nothing changes then.</summary>
    static (TensorParallelStyle, TensorParallelShard) Split(TensorParallelStyle style, TensorParallelShard? shard)
    {
        var tp = shard ?? TensorParallelShard.None;
        if (tp.Size < 1 || tp.Rank < 0 || tp.Rank >= tp.Size)
            throw new ArgumentException($"bad tensor parallel shard: rank {tp.Rank} of {tp.Size}");
        return tp.IsSplit && style != TensorParallelStyle.Replicated ? (style, tp) : (TensorParallelStyle.Replicated, tp);
    }

    /// <summary>The canonical module path, e.g. "model.layers.3.self_attn.q_proj" or "lm_head".</summary>
    public string ModulePath { get; }

    public long InFeatures { get; }

    public long OutFeatures { get; }

    /// <summary>How this projection is split across tensor-parallel ranks; Replicated when it is whole.</summary>
    public TensorParallelStyle ParallelStyle { get; }

    /// <summary>The shard of the slice this projection belongs to (rank 0 of 1 without tensor parallelism).</summary>
    public TensorParallelShard TensorParallel { get; }

    /// <summary>The full model's input width (in, not in/t, for a row-parallel part).</summary>
    public long FullInFeatures => ParallelStyle == TensorParallelStyle.RowParallel ? InFeatures * TensorParallel.Size : InFeatures;

    /// <summary>The full model's output width (out, not out/t, for a column-parallel part).</summary>
    public long FullOutFeatures => ParallelStyle == TensorParallelStyle.ColumnParallel ? OutFeatures * TensorParallel.Size : OutFeatures;

    /// <summary>The part of the full weight [FullOut, FullIn] this projection holds; null: all of it.</summary>
    public TensorSlice? WeightSlice => ParallelStyle switch
    {
        TensorParallelStyle.ColumnParallel => TensorParallel.Part(0, FullOutFeatures),
        TensorParallelStyle.RowParallel => TensorParallel.Part(1, FullInFeatures),
        _ => null,
    };

    /// <summary>The part of the full lora_A [r, FullIn] this projection holds: its columns when row-parallel.</summary>
    public TensorSlice? LoraASlice => ParallelStyle == TensorParallelStyle.RowParallel ? TensorParallel.Part(1, FullInFeatures) : null;

    /// <summary>The part of the full lora_B [FullOut, r] this projection holds: its rows when column-parallel.</summary>
    public TensorSlice? LoraBSlice => ParallelStyle == TensorParallelStyle.ColumnParallel ? TensorParallel.Part(0, FullOutFeatures) : null;

    /// <summary>Whether the base weight is held in 4 bits.</summary>
    public bool IsQuantized => nf4_weight is not null;

    /// <summary>The dense base weight; throws for a 4-bit base (see <see cref="QuantizedWeight"/>).</summary>
    public Parameter Weight => weight ?? throw new InvalidOperationException($"{ModulePath} holds its base weight in NF4, not as a dense parameter");

    /// <summary>The 4-bit base weight, or null for a dense base.</summary>
    public Nf4Weight? QuantizedWeight => nf4_weight;

    public bool HasLora => lora_A is not null;

    /// <summary>lora_A.weight [r, in] (fp32), or null without an adapter.</summary>
    public Parameter? LoraA => lora_A?.Weight;

    /// <summary>lora_B.weight [out, r] (fp32), or null without an adapter.</summary>
    public Parameter? LoraB => lora_B?.Weight;

    public double LoraScaling { get; private set; }

    public double LoraDropout { get; private set; }

    /// <summary>The counter-based stream the adapter's dropout mask is drawn from: PEFT's module name for it.</summary>
    public string DropoutStream => ModulePath + ".lora_dropout";

    /// <summary>
    /// Adds an adapter: <paramref name="a"/> [r, in] and <paramref name="b"/> [out, r], both fp32 (PEFT's dtype). The
    /// projection takes them over (moving them to the base's device) as parameters that require gradients when
    /// <paramref name="trainable"/>.
    /// </summary>
    public void AttachLora(Tensor a, Tensor b, double scaling, double dropout, bool trainable = true)
    {
        if (lora_A is not null) throw new InvalidOperationException($"{ModulePath} already has a LoRA adapter");
        if (a.dim() != 2 || b.dim() != 2 || a.shape[1] != InFeatures || b.shape[0] != OutFeatures || a.shape[0] != b.shape[1])
            throw new ArgumentException(
                $"{ModulePath}: LoRA A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}] do not fit a [{OutFeatures}, {InFeatures}] projection (A is [r, {InFeatures}], B is [{OutFeatures}, r])");
        if (a.dtype != ScalarType.Float32 || b.dtype != ScalarType.Float32)
            throw new ArgumentException($"{ModulePath}: LoRA weights are kept in float32 (got {a.dtype} and {b.dtype})");
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentException($"{ModulePath}: LoRA dropout must be in [0, 1) (got {dropout})");
        lora_A = new LoraMatrix(AsParameter(a, trainable));
        lora_B = new LoraMatrix(AsParameter(b, trainable));
        register_module("lora_A", lora_A);
        register_module("lora_B", lora_B);
        LoraScaling = scaling;
        LoraDropout = dropout;
    }

    /// <summary>Where the base weight lives.</summary>
    public Device BaseDevice => weight?.device ?? nf4_weight!.buffers().First().device;

    Parameter AsParameter(Tensor value, bool trainable)
    {
        var device = BaseDevice;
        if (value.device != device)
        {
            var moved = value.to(device);
            value.Dispose();
            value = moved;
        }
        // The parameter takes over the native handle and must outlive any dispose scope open around this call.
        var parameter = new Parameter(value, trainable);
        parameter.DetachFromDisposeScope();
        return parameter;
    }

    /// <summary>The forward without training randomness (evaluation, generation, scoring, the LM head).</summary>
    public override Tensor forward(Tensor input) => forward(input, null);

    /// <summary>
    /// <c>base(x) + lora_B(lora_A(dropout(x))) * scaling</c> in PEFT's dtype order: the adapter runs on x cast to fp32,
    /// and dropout (on A's input only) acts only when <paramref name="randomness"/> is given, i.e. while training.
    /// </summary>
    public Tensor forward(Tensor input, StepRandomness? randomness)
    {
        using var scope = NewDisposeScope();
        var result = nn.functional.linear(input, BaseWeight(input.dtype));
        if (lora_A is null || lora_B is null) return result.MoveToOuterDisposeScope();

        var x = input.to(lora_A.Weight.dtype);
        if (randomness is not null && LoraDropout > 0) x = Dropout(x, randomness);
        var update = nn.functional.linear(nn.functional.linear(x, lora_A.Weight), lora_B.Weight) * LoraScaling;
        // PEFT's lora.Linear adds the fp32 update to the base output (promoting the sum to fp32) and casts the sum back;
        // its bnb Linear4bit casts the update to the base output's dtype first and adds in that dtype.
        var sum = nf4_weight is null
            ? (result + update).to(result.dtype)
            : result + update.to(result.dtype);
        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>The dense weight, or the 4-bit one dequantized to <paramref name="dtype"/> (no gradient).</summary>
    Tensor BaseWeight(ScalarType dtype) => weight ?? nf4_weight!.Dequantize(dtype);

    /// <summary>
    /// torch's dropout (<c>x * bernoulli(1 - p) / (1 - p)</c>) with the mask drawn from this module's own counter-based
    /// stream, on the CPU so every device and every recompute of the same micro-batch sees the same mask. A
    /// row-parallel part sees only its columns of the input: it draws the full input's mask, as the unsplit model does,
    /// and keeps its own columns, so tensor parallelism changes no draw.
    /// </summary>
    /// <remarks>
    /// The mask is drawn as booleans (the same draws as a float mask) and applied as <c>(x * mask) * (1 / (1 - p))</c>,
    /// the scale in the input's dtype as torch's dropout computes it: the values are bitwise those of multiplying by a
    /// float mask of 0 and 1 / (1 - p), but autograd keeps the 1-byte mask for the backward rather than a float copy (the
    /// planner counts 1 byte, as PyTorch's fused dropout keeps).
    /// </remarks>
    Tensor Dropout(Tensor x, StepRandomness randomness)
    {
        var keep = 1 - LoraDropout;
        float scale = 1f / (float)keep;
        using var generator = randomness.GeneratorFor(DropoutStream);
        long[] shape = [.. x.shape[..^1], FullInFeatures];
        var mask = empty(shape, ScalarType.Bool).bernoulli_(keep, generator);
        if (LoraASlice is { } columns) mask = mask.narrow(-1, columns.Start, columns.Length);
        return x.mul(mask.to(x.device)).mul_(scale);
    }
}
