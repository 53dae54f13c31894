namespace Runtime.Training.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood) used as a counter-based generator: the value at counter c of stream s is the
/// finalizer applied to s + (c + 1) * golden gamma. No state, so any value can be recomputed from (seed, counter) alone,
/// on any worker, after any restart.
/// </summary>
public static class SplitMix64
{
    public const ulong Gamma = 0x9E3779B97F4A7C15UL;

    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong At(ulong seed, ulong counter) => Mix(seed + (counter + 1) * Gamma);
}
