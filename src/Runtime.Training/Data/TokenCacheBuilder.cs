using System.Runtime.InteropServices;
using Runtime.Model.IO;
using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// Tokenizes a JSONL file into a token cache (format: <see cref="TokenCacheHeader"/>, <see cref="TokenCacheLayout"/>).
/// Rows are parsed and tokenized in parallel, a chunk of lines at a time, and written in line order, so the file is the
/// same whatever the number of threads. The file is written through <see cref="AtomicFile"/>: until the final rename
/// nothing is visible under the cache's name, so a crash or a bad row leaves the previous cache (or none), never half a
/// cache. Builders racing on the same cache write identical bytes; the last rename wins harmlessly.
/// </summary>
public static class TokenCacheBuilder
{
    const int ChunkLines = 2048;

    /// <summary>Builds <paramref name="cachePath"/> from <paramref name="dataPath"/> and returns what it holds.</summary>
    public static DataCounts Build(string dataPath, string cachePath, Llama3Tokenizer tokenizer, DataOptions options)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("token caches are written on little-endian machines");
        var encoder = new SampleEncoder(tokenizer, options);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.Parallelism > 0 ? options.Parallelism : Environment.ProcessorCount };
        TokenCacheHeader? header = null;
        AtomicFile.Write(cachePath, stream =>
        {
            using var reader = new JsonlLineReader(dataPath);
            using var targets = SideFile(cachePath);
            var offsets = new List<long> { 0 };
            var sourceLines = new List<long>();
            var targetCounts = new List<int>();
            var skipped = new long[TokenCacheHeader.SkipSlots];
            long rows = 0, truncated = 0;

            stream.Write(new byte[TokenCacheHeader.Size]); // the header goes in last, once the counts are known
            var lines = new List<(long Number, byte[] Bytes)>(ChunkLines);
            var results = new object[ChunkLines];
            while (true)
            {
                lines.Clear();
                while (lines.Count < ChunkLines && reader.TryReadLine(out var number, out var bytes)) lines.Add((number, bytes));
                if (lines.Count == 0) break;
                Parallel.For(0, lines.Count, parallel, i => results[i] = EncodeLine(encoder, lines[i].Bytes, dataPath, lines[i].Number));
                for (int i = 0; i < lines.Count; i++)
                {
                    rows++;
                    if (results[i] is DataFormatException error)
                    {
                        if (!options.SkipInvalid) throw error;
                        skipped[(int)error.Reason!.Value]++;
                        continue;
                    }
                    var sample = (EncodedSample)results[i];
                    if (sample.TargetCount == 0)
                    {
                        skipped[(int)SkipReason.NoLearnedTokens]++;
                        continue;
                    }
                    stream.Write(MemoryMarshal.AsBytes(sample.Ids.AsSpan()));
                    targets.Write(MemoryMarshal.AsBytes(sample.Targets.AsSpan()));
                    offsets.Add(offsets[^1] + sample.Length);
                    sourceLines.Add(lines[i].Number);
                    targetCounts.Add(sample.TargetCount);
                    if (sample.Truncated) truncated++;
                }
                Array.Clear(results);
            }

            if (rows == 0) throw new DataFormatException(dataPath, "the file is empty (no rows, only blank lines or nothing)");
            if (targetCounts.Count == 0)
            {
                throw new DataFormatException(dataPath, $"no usable samples: {DataCounts.From(rows, 0, 0, 0, skipped).Summary()}");
            }

            header = new TokenCacheHeader
            {
                SourceSha256 = reader.Sha256(),
                SourceLength = reader.BytesRead,
                TokenizerFingerprint = TokenizerFingerprint.Of(tokenizer),
                SettingsText = options.SettingsText,
                VocabSize = tokenizer.VocabSize,
                MaxSeqLength = options.MaxSeqLength,
                Rows = rows,
                Samples = targetCounts.Count,
                Tokens = offsets[^1],
                Truncated = truncated,
                Skipped = skipped,
            };
            var layout = header.Layout;
            Pad(stream, layout.OffsetsAt);
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(offsets)));
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(sourceLines)));
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(targetCounts)));
            if (stream.Position != layout.TargetsAt) throw new InvalidOperationException("token cache sections are misplaced");
            targets.Position = 0;
            targets.CopyTo(stream);
            if (stream.Position != layout.FileLength) throw new InvalidOperationException("token cache length is wrong");
            stream.Position = 0;
            stream.Write(header.ToBytes());
        });
        return header!.Counts;
    }

    static object EncodeLine(SampleEncoder encoder, byte[] line, string file, long number)
    {
        try
        {
            return encoder.Encode(JsonlRowParser.Parse(line, file, number), file, number);
        }
        catch (DataFormatException e)
        {
            return e;
        }
    }

    /// <summary>The targets are known only as samples come, after the ids: they wait in a temporary file beside the cache.</summary>
    static FileStream SideFile(string cachePath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(cachePath))!;
        var path = Path.Combine(folder, $"{AtomicFile.TemporaryPrefix}{Guid.NewGuid():N}-targets");
        return new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
    }

    static void Pad(Stream stream, long to)
    {
        if (stream.Position > to) throw new InvalidOperationException("token cache sections overlap");
        stream.Write(new byte[to - stream.Position]);
    }
}
