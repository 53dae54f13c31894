using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// How rows become token samples. Every setting here that changes the cached tokens is part of the cache's settings
/// fingerprint (<see cref="SettingsText"/>), so changing it rebuilds the cache.
/// </summary>
public sealed record DataOptions
{
    /// <summary>
    /// Bump when the rules that turn rows into tokens change (row shapes, the instruction/input separator, masking), so
    /// caches written by older code are rebuilt instead of trusted.
    /// </summary>
    public const int EncodingRulesVersion = 1;

    public DataOptions(int maxSeqLength)
    {
        if (maxSeqLength < 2)
            throw new ArgumentOutOfRangeException(nameof(maxSeqLength), maxSeqLength,
                "max-seq-length must be at least 2 (a sample needs a token to predict from and one to learn)");
        MaxSeqLength = maxSeqLength;
    }

    /// <summary>Samples longer than this keep their first MaxSeqLength tokens (and are counted as truncated).</summary>
    public int MaxSeqLength { get; }

    /// <summary>The chat template for conversation rows; Llama 3.1's by default.</summary>
    public ChatTemplate Template { get; init; } = ChatTemplate.Default;

    /// <summary>Skip rows that are not valid (counting them by reason) instead of failing on the first one.</summary>
    public bool SkipInvalid { get; init; }

    /// <summary>Threads that tokenize while building a cache; 0 means one per core. The result does not depend on it.</summary>
    public int Parallelism { get; init; }

    /// <summary>The settings that change the cache's contents, as stored (readable) in its header and hashed.</summary>
    public string SettingsText =>
        $"rules={EncodingRulesVersion};template={Template.Name};max-seq-length={MaxSeqLength};skip-invalid={(SkipInvalid ? 1 : 0)}";
}
