using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>How attention scores are computed; both give Hugging Face's numbers within rounding.</summary>
public enum AttentionImplementation
{
    /// <summary>Hugging Face's "eager" path: matmul, additive mask, softmax in fp32, cast back, matmul.</summary>
    Eager,

    /// <summary>libtorch's fused <c>scaled_dot_product_attention</c> (flash kernel on CPU; fp32 accumulation).</summary>
    ScaledDotProduct,
}

/// <summary>How the seven projections of each decoder layer hold their base weight.</summary>
public enum ProjectionBase
{
    /// <summary>A dense parameter in the model dtype (full fine-tuning, LoRA, inference).</summary>
    Dense,

    /// <summary>
    /// Frozen NF4 codes with double-quantized statistics (QLoRA), dequantized to the model dtype for each matmul.
    /// Embeddings, norms and the LM head stay dense in the model dtype.
    /// </summary>
    Nf4,
}

/// <summary>Precision, attention path and device of a model slice.</summary>
public sealed record LlamaModelOptions
{
    /// <summary>Weights and activations: <see cref="ScalarType.Float32"/> or <see cref="ScalarType.BFloat16"/>.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// The default is scaled_dot_product_attention: measured on the CPU build machine (2 layers of the "small" preset,
    /// batch 1, 2 threads) it was faster than eager everywhere: fp32 forward 2.0x at 1024 and 2048 tokens, 1.35x with
    /// packed segments (masked kernel), fp32 forward+backward 1.5x causal and 1.85x packed, bf16 forward 1.7-2.3x; the
    /// logits agreed within 3e-6 (fp32) and within bf16 rounding (bf16).
    /// </summary>
    public AttentionImplementation Attention { get; init; } = AttentionImplementation.ScaledDotProduct;

    /// <summary>Where the weights live; null means CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>Whether the loaded parameters require gradients (false for inference and frozen bases).</summary>
    public bool RequiresGrad { get; init; } = true;

    /// <summary>
    /// Dense or NF4 projection weights. For NF4 a dense stored weight is read in <see cref="DType"/> and quantized from
    /// that (QLoRA loads in bf16 and quantizes, as transformers does with torch_dtype=bfloat16).
    /// </summary>
    public ProjectionBase ProjectionBase { get; init; } = ProjectionBase.Dense;

    public static LlamaModelOptions Default { get; } = new();

    internal LlamaModelOptions Validate()
    {
        if (DType is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"Llama weights and activations must be float32 or bfloat16 (got {DType})");
        return this;
    }
}
