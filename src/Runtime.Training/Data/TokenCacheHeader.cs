using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Runtime.Training.Data;

/// <summary>
/// The fixed 4096-byte header of a token cache file (all integers little-endian):
/// <code>
///    0   8  magic "RTTOKCA\n"
///    8   4  format version (1)
///   12   4  header size (4096)
///   16  32  SHA-256 of the source file
///   48   8  source length in bytes
///   56  32  tokenizer fingerprint (<see cref="TokenizerFingerprint"/>)
///   88  32  SHA-256 of the settings text
///  120   4  vocabulary size
///  124   4  max-seq-length
///  128   8  rows (non-blank lines)
///  136   8  samples N
///  144   8  tokens T
///  152   8  truncated samples
///  160 128  skipped rows per <see cref="SkipReason"/> value (16 slots of 8 bytes)
///  288   8  file length
///  296   4  settings text length L (at most 1024)
///  300   L  settings text, UTF-8 (<see cref="DataOptions.SettingsText"/>, kept readable for messages)
/// 4064  32  SHA-256 of bytes 0..4063
/// </code>
/// Then the sections, at offsets computed from N and T (<see cref="TokenCacheLayout"/>).
/// </summary>
internal sealed record TokenCacheHeader
{
    public const int Size = 4096;
    public const int Version = 1;
    public const int SkipSlots = 16;
    const int SettingsTextAt = 300, MaxSettingsText = 1024, ChecksumAt = Size - 32;
    static ReadOnlySpan<byte> Magic => "RTTOKCA\n"u8;

    public required byte[] SourceSha256 { get; init; }
    public required long SourceLength { get; init; }
    public required byte[] TokenizerFingerprint { get; init; }
    public required string SettingsText { get; init; }
    public required int VocabSize { get; init; }
    public required int MaxSeqLength { get; init; }
    public required long Rows { get; init; }
    public required long Samples { get; init; }
    public required long Tokens { get; init; }
    public required long Truncated { get; init; }
    public required long[] Skipped { get; init; }

    public byte[] SettingsFingerprint => SHA256.HashData(Encoding.UTF8.GetBytes(SettingsText));

    public TokenCacheLayout Layout => new(Samples, Tokens);

    public DataCounts Counts => DataCounts.From(Rows, Samples, Tokens, Truncated, Skipped);

    public byte[] ToBytes()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("token caches are written on little-endian machines");
        var settings = Encoding.UTF8.GetBytes(SettingsText);
        if (settings.Length > MaxSettingsText) throw new InvalidOperationException($"settings text over {MaxSettingsText} bytes");
        var bytes = new byte[Size];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], Version);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], Size);
        SourceSha256.CopyTo(span[16..]);
        BinaryPrimitives.WriteInt64LittleEndian(span[48..], SourceLength);
        TokenizerFingerprint.CopyTo(span[56..]);
        SettingsFingerprint.CopyTo(span[88..]);
        BinaryPrimitives.WriteInt32LittleEndian(span[120..], VocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(span[124..], MaxSeqLength);
        BinaryPrimitives.WriteInt64LittleEndian(span[128..], Rows);
        BinaryPrimitives.WriteInt64LittleEndian(span[136..], Samples);
        BinaryPrimitives.WriteInt64LittleEndian(span[144..], Tokens);
        BinaryPrimitives.WriteInt64LittleEndian(span[152..], Truncated);
        for (int i = 0; i < SkipSlots; i++)
            BinaryPrimitives.WriteInt64LittleEndian(span[(160 + 8 * i)..], i < Skipped.Length ? Skipped[i] : 0);
        BinaryPrimitives.WriteInt64LittleEndian(span[288..], Layout.FileLength);
        BinaryPrimitives.WriteInt32LittleEndian(span[296..], settings.Length);
        settings.CopyTo(span[SettingsTextAt..]);
        SHA256.HashData(span[..ChecksumAt], span[ChecksumAt..]);
        return bytes;
    }

    /// <summary>Reads and checks a header; <paramref name="fileLength"/> is the actual file's length.</summary>
    public static TokenCacheHeader Parse(ReadOnlySpan<byte> bytes, long fileLength, string path)
    {
        if (fileLength < Size || bytes.Length < Size)
            throw new TokenCacheException(path, $"not a token cache: {fileLength} bytes, shorter than the {Size}-byte header");
        if (!bytes[..8].SequenceEqual(Magic)) throw new TokenCacheException(path, "not a token cache (wrong magic bytes)");
        int version = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        if (version != Version)
            throw new TokenCacheException(path, $"token cache format version {version}; this build reads version {Version}");
        Span<byte> checksum = stackalloc byte[32];
        SHA256.HashData(bytes[..ChecksumAt], checksum);
        if (!checksum.SequenceEqual(bytes[ChecksumAt..Size]))
            throw new TokenCacheException(path, "the token cache header is corrupt (its checksum does not match)");
        if (BinaryPrimitives.ReadInt32LittleEndian(bytes[12..]) != Size)
            throw new TokenCacheException(path, "the token cache header size is not 4096");

        int settingsLength = BinaryPrimitives.ReadInt32LittleEndian(bytes[296..]);
        if (settingsLength is < 0 or > MaxSettingsText) throw new TokenCacheException(path, "the token cache header's settings text is corrupt");
        var skipped = new long[SkipSlots];
        for (int i = 0; i < SkipSlots; i++) skipped[i] = BinaryPrimitives.ReadInt64LittleEndian(bytes[(160 + 8 * i)..]);
        var header = new TokenCacheHeader
        {
            SourceSha256 = bytes[16..48].ToArray(),
            SourceLength = BinaryPrimitives.ReadInt64LittleEndian(bytes[48..]),
            TokenizerFingerprint = bytes[56..88].ToArray(),
            SettingsText = Encoding.UTF8.GetString(bytes.Slice(SettingsTextAt, settingsLength)),
            VocabSize = BinaryPrimitives.ReadInt32LittleEndian(bytes[120..]),
            MaxSeqLength = BinaryPrimitives.ReadInt32LittleEndian(bytes[124..]),
            Rows = BinaryPrimitives.ReadInt64LittleEndian(bytes[128..]),
            Samples = BinaryPrimitives.ReadInt64LittleEndian(bytes[136..]),
            Tokens = BinaryPrimitives.ReadInt64LittleEndian(bytes[144..]),
            Truncated = BinaryPrimitives.ReadInt64LittleEndian(bytes[152..]),
            Skipped = skipped,
        };
        if (!header.SettingsFingerprint.AsSpan().SequenceEqual(bytes[88..120]))
            throw new TokenCacheException(path, "the token cache header is corrupt (settings text and fingerprint disagree)");
        if (header.Samples is < 1 or > int.MaxValue || header.Tokens < header.Samples || header.MaxSeqLength < 2)
            throw new TokenCacheException(path, $"the token cache header is corrupt ({header.Samples} samples, {header.Tokens} tokens)");
        long described = BinaryPrimitives.ReadInt64LittleEndian(bytes[288..]);
        if (described != header.Layout.FileLength)
            throw new TokenCacheException(path, "the token cache header is corrupt (its file length disagrees with its counts)");
        if (fileLength != described)
            throw new TokenCacheException(path,
                $"the token cache is {fileLength} bytes but its header describes {described} bytes (cut short or overwritten)");
        return header;
    }

    /// <summary>Why this cache does not fit the wanted one, or null when it does.</summary>
    public string? Mismatch(byte[] sourceSha256, long sourceLength, byte[] tokenizerFingerprint, string settingsText)
    {
        if (SourceLength != sourceLength || !SourceSha256.AsSpan().SequenceEqual(sourceSha256)) return "the data file changed";
        if (!TokenizerFingerprint.AsSpan().SequenceEqual(tokenizerFingerprint)) return "the tokenizer changed";
        if (SettingsText != settingsText) return $"the settings changed ({SettingsText} -> {settingsText})";
        return null;
    }
}

/// <summary>
/// Where the sections of a cache with N samples and T tokens lie, each aligned to its element size:
/// ids int32[T] at 4096; sample offsets int64[N+1] (sample i is tokens offsets[i]..offsets[i+1]); source lines
/// int64[N] (the 1-based JSONL line of each sample); target counts int32[N]; targets byte[T] (1 = learned).
/// </summary>
internal readonly record struct TokenCacheLayout(long Samples, long Tokens)
{
    public long IdsAt => TokenCacheHeader.Size;
    public long OffsetsAt => Align8(IdsAt + 4 * Tokens);
    public long SourceLinesAt => OffsetsAt + 8 * (Samples + 1);
    public long TargetCountsAt => SourceLinesAt + 8 * Samples;
    public long TargetsAt => TargetCountsAt + 4 * Samples;
    public long FileLength => TargetsAt + Tokens;

    static long Align8(long at) => (at + 7) & ~7L;
}
