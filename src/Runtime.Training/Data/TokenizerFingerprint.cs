using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// A SHA-256 over what decides a tokenizer's ids: the vocabulary size and every token's bytes in id order (the BPE
/// ranks and the special tokens' names). Two files that load to the same vocabulary (tokenizer.json and Meta's
/// tokenizer.model with the same names) share a fingerprint, so a cache survives switching between them.
/// </summary>
public static class TokenizerFingerprint
{
    static readonly ConditionalWeakTable<Llama3Tokenizer, byte[]> Computed = new();

    public static byte[] Of(Llama3Tokenizer tokenizer) =>
        (byte[])Computed.GetValue(tokenizer, Compute).Clone();

    static byte[] Compute(Llama3Tokenizer tokenizer)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> number = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(number, tokenizer.VocabSize);
        hash.AppendData(number);
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            var bytes = tokenizer.TokenBytes(id);
            BinaryPrimitives.WriteInt32LittleEndian(number, bytes.Length);
            hash.AppendData(number);
            hash.AppendData(bytes);
        }
        return hash.GetHashAndReset();
    }
}
