namespace Runtime.Training.Data;

/// <summary>
/// A row as tokens, truncated to max-seq-length. <see cref="Targets"/> marks the tokens the loss learns (the label is
/// the id there, -100 elsewhere). The first token is never a target: the model shifts labels by one, so nothing
/// predicts it, and in a packed row it would otherwise be predicted from the previous sample's last token.
/// </summary>
public sealed record EncodedSample(int[] Ids, bool[] Targets, int TargetCount, bool Truncated)
{
    public int Length => Ids.Length;

    /// <summary>Hugging Face labels: the id where learned, -100 elsewhere (unshifted).</summary>
    public int[] Labels()
    {
        var labels = new int[Ids.Length];
        for (int i = 0; i < labels.Length; i++) labels[i] = Targets[i] ? Ids[i] : Model.Tokenization.ChatTokens.IgnoreIndex;
        return labels;
    }
}
