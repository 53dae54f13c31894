using Runtime.Model.Lora;
using Runtime.Model.Quantization;
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
/// </summary>
public sealed class Projection : nn.Module<Tensor, Tensor>
{
    // Field names are the state_dict names; exactly one base is set, and the adapter fields only after AttachLora.
    readonly Parameter? weight;
    readonly Nf4Weight? nf4_weight;
    LoraMatrix? lora_A;
    LoraMatrix? lora_B;

    /// <summary>A dense base: <paramref name="weight"/> [out, in] in the activation dtype.</summary>
    public Projection(string modulePath, Parameter weight) : base(nameof(Projection))
    {
        if (weight.dim() != 2)
            throw new ArgumentException($"{modulePath}: a projection weight is [out, in]; got [{string.Join(", ", weight.shape)}]");
        ModulePath = modulePath;
        this.weight = weight;
        OutFeatures = weight.shape[0];
        InFeatures = weight.shape[1];
        RegisterComponents();
    }

    /// <summary>A frozen 4-bit base (QLoRA).</summary>
    public Projection(string modulePath, Nf4Weight weight) : base(nameof(Projection))
    {
        if (weight.Shape.Length != 2)
            throw new ArgumentException($"{modulePath}: a projection weight is [out, in]; got [{string.Join(", ", weight.Shape)}]");
        ModulePath = modulePath;
        nf4_weight = weight;
        OutFeatures = weight.Shape[0];
        InFeatures = weight.Shape[1];
        RegisterComponents();
    }

    /// <summary>The canonical module path, e.g. "model.layers.3.self_attn.q_proj" or "lm_head".</summary>
    public string ModulePath { get; }

    public long InFeatures { get; }

    public long OutFeatures { get; }

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
    /// stream, on the CPU so every device and every recompute of the same micro-batch sees the same mask.
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
        var mask = empty(x.shape, ScalarType.Bool).bernoulli_(keep, generator);
        return x.mul(mask.to(x.device)).mul_(scale);
    }
}
