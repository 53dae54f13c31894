using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// A data file tokenized once (by <see cref="TokenCacheBuilder"/>) and memory-mapped by every later run and every
/// worker: reading a sample is a span over the mapping, nothing is loaded up front but the header and a pass over the
/// sample offsets that checks them. <see cref="OpenOrBuild"/> reuses a cache whose header names the same source bytes
/// (SHA-256), tokenizer (<see cref="TokenizerFingerprint"/>) and settings (<see cref="DataOptions.SettingsText"/>), and
/// rebuilds it otherwise, including when it is unreadable: a cache is derived data, so a corrupt one is replaced, not
/// reported. <see cref="Open"/> reads a given cache file strictly and reports what is wrong with it.
/// </summary>
public sealed unsafe class TokenCache : ISampleSource, IDisposable
{
    public const string Extension = ".rtcache";

    readonly MemoryMappedFile _map;
    readonly MemoryMappedViewAccessor _view;
    readonly TokenCacheHeader _header;
    byte* _base;
    readonly int* _ids;
    readonly long* _offsets;
    readonly long* _sourceLines;
    readonly int* _targetCounts;
    readonly byte* _targets;

    TokenCache(string path, TokenCacheHeader header, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        Path = path;
        _header = header;
        _map = map;
        _view = view;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
        var layout = header.Layout;
        _ids = (int*)(_base + layout.IdsAt);
        _offsets = (long*)(_base + layout.OffsetsAt);
        _sourceLines = (long*)(_base + layout.SourceLinesAt);
        _targetCounts = (int*)(_base + layout.TargetCountsAt);
        _targets = _base + layout.TargetsAt;
    }

    public string Path { get; }

    /// <summary>Whether <see cref="OpenOrBuild"/> tokenized the data file this time (false: an existing cache was reused).</summary>
    public bool WasBuilt { get; private set; }

    /// <summary>Why it was built ("no cache yet", "the data file changed", ...); null when reused or opened directly.</summary>
    public string? BuildReason { get; private set; }

    public DataCounts Counts => _header.Counts;

    public int Count => (int)_header.Samples;

    public long TokenCount => _header.Tokens;

    public int MaxSeqLength => _header.MaxSeqLength;

    public int VocabSize => _header.VocabSize;

    /// <summary>The settings the cache was built with, e.g. "rules=1;template=llama3.1;max-seq-length=2048;skip-invalid=0".</summary>
    public string SettingsText => _header.SettingsText;

    public string SourceSha256 => Convert.ToHexStringLower(_header.SourceSha256);

    /// <summary>The cache for <paramref name="dataPath"/>: <c>&lt;data&gt;.rtcache</c> beside it, or, in
    /// <paramref name="cacheFolder"/>, <c>&lt;file name&gt;.&lt;8 hex of the full path's hash&gt;.rtcache</c> (files of
    /// the same name in different folders then keep separate caches).</summary>
    public static string PathFor(string dataPath, string? cacheFolder = null)
    {
        var full = System.IO.Path.GetFullPath(dataPath);
        if (cacheFolder is null) return full + Extension;
        var tag = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..8];
        return System.IO.Path.Combine(System.IO.Path.GetFullPath(cacheFolder), $"{System.IO.Path.GetFileName(full)}.{tag}{Extension}");
    }

    /// <summary>
    /// Opens the cache of <paramref name="dataPath"/> if it matches the file, tokenizer and options; otherwise tokenizes
    /// the file into a new cache first (see <see cref="WasBuilt"/> and <see cref="BuildReason"/>). Bad rows throw
    /// <see cref="DataFormatException"/> unless <see cref="DataOptions.SkipInvalid"/>.
    /// </summary>
    public static TokenCache OpenOrBuild(string dataPath, Llama3Tokenizer tokenizer, DataOptions options, string? cacheFolder = null)
    {
        if (!File.Exists(dataPath)) throw new FileNotFoundException($"{dataPath}: no such data file", dataPath);
        var cachePath = PathFor(dataPath, cacheFolder);
        var sourceSha = JsonlLineReader.HashFile(dataPath);
        long sourceLength = new FileInfo(dataPath).Length;
        var tokenizerFingerprint = TokenizerFingerprint.Of(tokenizer);

        string reason = "no cache yet";
        if (File.Exists(cachePath))
        {
            try
            {
                var existing = Open(cachePath);
                var mismatch = existing._header.Mismatch(sourceSha, sourceLength, tokenizerFingerprint, options.SettingsText);
                if (mismatch is null) return existing;
                existing.Dispose();
                reason = mismatch;
            }
            catch (TokenCacheException e)
            {
                reason = $"the old cache was unreadable ({e.Problem})";
            }
        }

        CheckWritable(cachePath);
        TokenCacheBuilder.Build(dataPath, cachePath, tokenizer, options);
        var built = Open(cachePath);
        built.WasBuilt = true;
        built.BuildReason = reason;
        return built;
    }

    /// <summary>Opens a cache file as it is, checking its header and sample offsets; throws <see cref="TokenCacheException"/>.</summary>
    public static TokenCache Open(string cachePath)
    {
        FileStream stream;
        try
        {
            // Delete sharing: a rebuild may rename a new cache over this one while it is mapped here.
            stream = new FileStream(cachePath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        catch (FileNotFoundException e)
        {
            throw new TokenCacheException(cachePath, "no such token cache", e);
        }
        TokenCacheHeader header;
        var bytes = new byte[TokenCacheHeader.Size];
        try
        {
            int read = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            header = TokenCacheHeader.Parse(bytes.AsSpan(0, read), stream.Length, cachePath);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        var map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        var cache = new TokenCache(System.IO.Path.GetFullPath(cachePath), header, map, view);
        try
        {
            cache.CheckOffsets();
        }
        catch
        {
            cache.Dispose();
            throw;
        }
        return cache;
    }

    public int Length(int sample) => (int)(Offset(sample + 1) - Offset(sample));

    public ReadOnlySpan<int> Ids(int sample) => new(_ids + Offset(sample), Length(sample));

    public ReadOnlySpan<byte> Targets(int sample) => new(_targets + Offset(sample), Length(sample));

    public int TargetCount(int sample)
    {
        CheckSample(sample);
        return _targetCounts[sample];
    }

    /// <summary>The 1-based line of the data file the sample came from.</summary>
    public long SourceLine(int sample)
    {
        CheckSample(sample);
        return _sourceLines[sample];
    }

    /// <summary>Hugging Face labels of a sample: the id where learned, -100 elsewhere.</summary>
    public int[] Labels(int sample)
    {
        var ids = Ids(sample);
        var targets = Targets(sample);
        var labels = new int[ids.Length];
        for (int i = 0; i < labels.Length; i++) labels[i] = targets[i] != 0 ? ids[i] : ChatTokens.IgnoreIndex;
        return labels;
    }

    long Offset(int index)
    {
        if (_base == null) throw new ObjectDisposedException(nameof(TokenCache), $"{Path} is closed");
        if ((uint)index > (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"the cache has {Count} samples");
        return _offsets[index];
    }

    void CheckSample(int sample)
    {
        if (_base == null) throw new ObjectDisposedException(nameof(TokenCache), $"{Path} is closed");
        if ((uint)sample >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(sample), sample, $"the cache has {Count} samples");
    }

    /// <summary>One pass over the offsets (8 bytes a sample), so a damaged body fails here and not as a wild read later.</summary>
    void CheckOffsets()
    {
        if (_offsets[0] != 0) throw new TokenCacheException(Path, "the token cache is corrupt (the first sample does not start at 0)");
        for (int i = 0; i < Count; i++)
        {
            long length = _offsets[i + 1] - _offsets[i];
            if (length < 1 || length > MaxSeqLength)
                throw new TokenCacheException(Path, $"the token cache is corrupt (sample {i} has {length} tokens; max-seq-length is {MaxSeqLength})");
            if (_targetCounts[i] < 1 || _targetCounts[i] > length)
                throw new TokenCacheException(Path, $"the token cache is corrupt (sample {i} has {_targetCounts[i]} targets in {length} tokens)");
        }
        if (_offsets[Count] != TokenCount)
            throw new TokenCacheException(Path, $"the token cache is corrupt (offsets end at {_offsets[Count]}, not at {TokenCount} tokens)");
    }

    static void CheckWritable(string cachePath)
    {
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(cachePath))!;
        try
        {
            Directory.CreateDirectory(folder);
            using var probe = new FileStream(System.IO.Path.Combine(folder, $"{Model.IO.AtomicFile.TemporaryPrefix}{Guid.NewGuid():N}-probe"),
                FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new TokenCacheException(cachePath,
                $"cannot write the token cache in {folder} ({e.Message}); give a writable cache folder (the data folder may be read-only)", e);
        }
    }

    public void Dispose()
    {
        if (_base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _map.Dispose();
        }
    }
}
