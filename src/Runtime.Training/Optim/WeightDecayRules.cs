using System.Text.RegularExpressions;

namespace Runtime.Training.Optim;

/// <summary>Which parameters get weight decay, decided by their canonical name.</summary>
public static partial class WeightDecayRules
{
    /// <summary>
    /// Hugging Face Trainer's default (<c>get_decay_parameter_names</c>): no decay for parameters whose lower-cased name
    /// contains "bias", "layernorm" or "rmsnorm", or has a path component "norm" or ending in "_norm"; everything else,
    /// LoRA A/B and embeddings included, is decayed. HF matches these patterns on every suffix of the module path; a
    /// suffix starting at a component boundary matches exactly when the full name does, so testing the full name is the
    /// same rule. (HF also excludes parameters of <c>nn.LayerNorm</c> modules by type; Llama has none, its norms are
    /// caught by name.)
    /// </summary>
    public static bool HuggingFace(string parameterName) => !NoDecayPattern().IsMatch(parameterName.ToLowerInvariant());

    /// <summary>Every parameter is decayed (plain <c>torch.optim.AdamW(model.parameters())</c>).</summary>
    public static bool All(string parameterName) => true;

    [GeneratedRegex(@"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)", RegexOptions.CultureInvariant)]
    private static partial Regex NoDecayPattern();
}
