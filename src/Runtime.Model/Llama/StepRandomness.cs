using System.Text;
using TorchSharp;

namespace Runtime.Model.Llama;

/// <summary>
/// Counter-based randomness for one micro-batch of one training step. Every random draw in the forward (LoRA dropout)
/// gets its own generator seeded from (run seed, optimizer step, global micro-batch index, stream name), never from a
/// global generator, so the same draw happens whichever worker runs the micro-batch, in whatever order, however the
/// run is laid out, after a resume, and when a checkpointed layer is recomputed during backward.
/// A forward without a <see cref="StepRandomness"/> (evaluation, generation, scoring) draws nothing.
/// </summary>
public sealed record StepRandomness(long Seed, long Step, long MicroBatch)
{
    /// <summary>A fresh generator for the named stream, e.g. "model.layers.3.self_attn.q_proj.lora_dropout".</summary>
    public torch.Generator GeneratorFor(string stream) => new((ulong)SeedFor(stream));

    /// <summary>The 63-bit seed of a stream: SplitMix64 over the counters and an FNV-1a hash of the name.</summary>
    public long SeedFor(string stream)
    {
        ulong h = Mix((ulong)Seed);
        h = Mix(h ^ (ulong)Step);
        h = Mix(h ^ (ulong)MicroBatch);
        h = Mix(h ^ Fnv1a(stream));
        return (long)(h >> 1);
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    static ulong Fnv1a(string text)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(text)) hash = (hash ^ b) * 0x100000001b3UL;
        return hash;
    }
}
