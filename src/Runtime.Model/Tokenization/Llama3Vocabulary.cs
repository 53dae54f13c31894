namespace Runtime.Model.Tokenization;

/// <summary>
/// What a Llama 3 tokenizer file defines, whatever its format: the bytes of each of the 128,000 BPE ranks (a rank is
/// also the token id) and the names of the 256 special tokens that follow them.
/// </summary>
internal sealed class Llama3Vocabulary
{
    public const int RankCount = 128000;

    public Llama3Vocabulary(byte[][] rankBytes, string[] specialNames, string source)
    {
        if (rankBytes.Length != RankCount) throw new ArgumentException($"expected {RankCount} ranks, got {rankBytes.Length}", nameof(rankBytes));
        if (specialNames.Length != Llama3SpecialTokens.Count)
            throw new ArgumentException($"expected {Llama3SpecialTokens.Count} special names, got {specialNames.Length}", nameof(specialNames));
        RankBytes = rankBytes;
        SpecialNames = specialNames;
        Source = source;
    }

    /// <summary>Token bytes indexed by rank (= id), 0..127999.</summary>
    public byte[][] RankBytes { get; }

    /// <summary>Special token names indexed by id - 128000.</summary>
    public string[] SpecialNames { get; }

    /// <summary>The file the vocabulary came from, for error messages.</summary>
    public string Source { get; }

    /// <summary>
    /// Checks that every rank has bytes and that no two ranks share them (tiktoken's encoder maps bytes to one rank, so a
    /// duplicate would silently drop a token), and that special names are unique and non-empty.
    /// </summary>
    public Llama3Vocabulary Validate()
    {
        var seen = new Dictionary<ReadOnlyMemory<byte>, int>(RankCount, ByteSequenceComparer.Instance);
        for (int rank = 0; rank < RankCount; rank++)
        {
            var bytes = RankBytes[rank];
            if (bytes is null) throw new TokenizerFormatException($"{Source}: rank {rank} is missing (Llama 3 has ranks 0..{RankCount - 1})");
            if (bytes.Length == 0) throw new TokenizerFormatException($"{Source}: rank {rank} is an empty token");
            if (!seen.TryAdd(bytes, rank))
                throw new TokenizerFormatException($"{Source}: ranks {seen[bytes]} and {rank} have the same bytes");
        }
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < SpecialNames.Length; i++)
        {
            int id = Llama3SpecialTokens.First + i;
            if (string.IsNullOrEmpty(SpecialNames[i])) throw new TokenizerFormatException($"{Source}: special token {id} has an empty name");
            if (!names.TryAdd(SpecialNames[i], id))
                throw new TokenizerFormatException($"{Source}: special tokens {names[SpecialNames[i]]} and {id} are both named \"{SpecialNames[i]}\"");
        }
        return this;
    }

    sealed class ByteSequenceComparer : IEqualityComparer<ReadOnlyMemory<byte>>
    {
        public static readonly ByteSequenceComparer Instance = new();
        public bool Equals(ReadOnlyMemory<byte> x, ReadOnlyMemory<byte> y) => x.Span.SequenceEqual(y.Span);
        public int GetHashCode(ReadOnlyMemory<byte> obj)
        {
            var hash = new HashCode();
            hash.AddBytes(obj.Span);
            return hash.ToHashCode();
        }
    }
}
