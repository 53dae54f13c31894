namespace Runtime.Model.Llama;

/// <summary>How <see cref="LlamaGenerator"/> picks tokens and when it stops.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>0 (or less) means greedy: always the most likely token.</summary>
    public double Temperature { get; init; }

    /// <summary>Nucleus sampling: keep the most likely tokens whose mass reaches TopP (1 keeps all).</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Seed of the sampler's own torch.Generator; the same seed gives the same tokens.</summary>
    public long Seed { get; init; }

    /// <summary>Stop after any of these ids (it is included in the output); null means the config's eos ids.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }

    public static GenerationOptions Greedy(int maxNewTokens) => new() { MaxNewTokens = maxNewTokens };

    internal void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must not be negative");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
        if (double.IsNaN(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), "must be a number");
    }
}
