using static TorchSharp.torch;

namespace Runtime.Training.Engine;

/// <summary>
/// What one micro-batch's forward on a stage produced. A stage that is not the last returns <see cref="Output"/>, the
/// hidden states [batch, seq, hidden] to send to the next stage (the caller owns and disposes that tensor; it shares
/// storage with what the stage keeps for its backward, so it must not be modified in place). The last stage returns
/// the micro-batch's summed next-token loss and how many labels it covers; <see cref="Output"/> is null there.
/// </summary>
public readonly record struct StageForward(Tensor? Output, double LossSum, long LabelledTokens)
{
    public static StageForward Hidden(Tensor output) => new(output, 0, 0);

    public static StageForward Loss(double sum, long labelledTokens) => new(null, sum, labelledTokens);
}
