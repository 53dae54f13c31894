namespace Runtime.Training.Optim;

/// <summary>
/// AdamW hyperparameters other than the learning rate, which comes from the schedule at every step. Defaults are the
/// Hugging Face / TRL recipe: betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (PyTorch's AdamW default; TorchSharp's
/// is 0) on the parameters <see cref="AppliesWeightDecay"/> selects, 0 on the others.
/// </summary>
public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay of the decay group: <c>p *= 1 - lr * WeightDecay</c> before the Adam update.</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Puts a parameter (by canonical name) in the decay group; the others form the no-decay group.</summary>
    public Func<string, bool> AppliesWeightDecay { get; init; } = WeightDecayRules.HuggingFace;

    internal void Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "beta1 must be in [0, 1)");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "beta2 must be in [0, 1)");
        if (!(Eps >= 0) || double.IsInfinity(Eps)) throw new ArgumentOutOfRangeException(nameof(Eps), Eps, "eps must be finite and >= 0");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "weight decay must be finite and >= 0");
        ArgumentNullException.ThrowIfNull(AppliesWeightDecay);
    }
}
