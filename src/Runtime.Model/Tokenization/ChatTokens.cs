namespace Runtime.Model.Tokenization;

/// <summary>
/// A tokenized conversation and, per token, whether training learns it (see <see cref="ChatTemplate.RenderTokens"/>).
/// </summary>
public sealed record ChatTokens(int[] Ids, bool[] IsAssistantLearned)
{
    public const int IgnoreIndex = -100;

    /// <summary>
    /// Hugging Face labels: the id where learned, -100 elsewhere. Not shifted: the model shifts labels by one itself.
    /// </summary>
    public int[] Labels()
    {
        var labels = new int[Ids.Length];
        for (int i = 0; i < labels.Length; i++) labels[i] = IsAssistantLearned[i] ? Ids[i] : IgnoreIndex;
        return labels;
    }
}
