namespace Runtime.Model.Config;

/// <summary>Llama 3's frequency-dependent rotary scaling (rope_type "llama3").</summary>
public sealed record RopeScaling(
    double Factor,
    double LowFreqFactor,
    double HighFreqFactor,
    int OriginalMaxPositionEmbeddings)
{
    public const string Llama3Type = "llama3";
}
