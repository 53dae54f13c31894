namespace Runtime.Training.Data;

/// <summary>
/// Why a row did not become a training sample. The numeric values are stored in token caches: append new reasons,
/// never renumber.
/// </summary>
public enum SkipReason
{
    /// <summary>The line is not one JSON object.</summary>
    MalformedJson = 0,
    /// <summary>The object has none of the accepted shapes' keys, or a key of the wrong JSON type.</summary>
    UnknownShape = 1,
    /// <summary>A message with an unknown or missing role, or a conversation without an assistant turn.</summary>
    InvalidConversation = 2,
    /// <summary>Text that must carry something (instruction, output, user and assistant turns, text) is empty.</summary>
    EmptyContent = 3,
    /// <summary>A pre-tokenized id outside the tokenizer's vocabulary.</summary>
    TokenOutOfRange = 4,
    /// <summary>Pre-tokenized labels that do not line up with the input ids.</summary>
    InvalidLabels = 5,
    /// <summary>
    /// Nothing left to learn once truncated (every label -100). Such samples are always dropped and counted, with or
    /// without skip-invalid: training on them would only dilute the loss normalisation.
    /// </summary>
    NoLearnedTokens = 6,
}

public static class SkipReasons
{
    /// <summary>Every reason, in value order; caches store one count per entry.</summary>
    public static readonly SkipReason[] All = Enum.GetValues<SkipReason>();

    public static string Describe(SkipReason reason) => reason switch
    {
        SkipReason.MalformedJson => "malformed JSON",
        SkipReason.UnknownShape => "unknown row shape",
        SkipReason.InvalidConversation => "invalid conversation",
        SkipReason.EmptyContent => "empty content",
        SkipReason.TokenOutOfRange => "token id out of vocabulary",
        SkipReason.InvalidLabels => "invalid labels",
        SkipReason.NoLearnedTokens => "no learned tokens after truncation",
        _ => reason.ToString(),
    };
}
