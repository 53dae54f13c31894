using System.Security.Cryptography;
using System.Text;
using Runtime.Model.Tests.Tokenization;
using Runtime.Model.Tokenization;
using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

public sealed class TokenCacheTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>, IDisposable
{
    readonly DataTempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    Llama3Tokenizer Tokenizer => fixture.Tokenizer;

    static string Chat(string user, string assistant) =>
        $$"""{"messages": [{"role": "user", "content": "{{user}}"}, {"role": "assistant", "content": "{{assistant}}"}]}""";

    string WriteData() => _folder.WriteJsonl("data.jsonl",
        Chat("Name a pet.", "A cat."),
        """{"text": "Plain text for continued pretraining."}""",
        """{"input_ids": [128000, 9906, 1917, 128001], "labels": [-100, -100, 1917, 128001]}""",
        """{"instruction": "Add 2 and 2.", "output": "4"}""");

    static byte[] Sha(string path) => SHA256.HashData(File.ReadAllBytes(path));

    [Fact]
    public void Samples_read_back_from_the_cache_equal_the_encoded_rows()
    {
        var data = WriteData();
        var options = new DataOptions(128);
        using var cache = TokenCache.OpenOrBuild(data, Tokenizer, options);
        var encoder = new SampleEncoder(Tokenizer, options);
        var lines = File.ReadAllLines(data);
        Assert.Equal(lines.Length, cache.Count);
        long tokens = 0;
        for (int i = 0; i < lines.Length; i++)
        {
            var expected = encoder.Encode(JsonlRowParser.Parse(Encoding.UTF8.GetBytes(lines[i]), data, i + 1), data, i + 1);
            Assert.Equal(expected.Ids, cache.Ids(i).ToArray());
            Assert.Equal(expected.Labels(), cache.Labels(i));
            Assert.Equal(expected.TargetCount, cache.TargetCount(i));
            Assert.Equal(i + 1, cache.SourceLine(i));
            tokens += expected.Length;
        }
        Assert.Equal(tokens, cache.TokenCount);
        Assert.Equal([-100, -100, 1917, 128001], cache.Labels(2));
        Assert.Equal(TokenCache.PathFor(data), cache.Path);
        Assert.Equal(data + ".rtcache", cache.Path);
        Assert.Equal(Convert.ToHexStringLower(Sha(data)), cache.SourceSha256);
    }

    [Fact]
    public void A_cache_is_built_once_and_then_reused()
    {
        var data = WriteData();
        var options = new DataOptions(128);
        int[] firstIds;
        using (var first = TokenCache.OpenOrBuild(data, Tokenizer, options))
        {
            Assert.True(first.WasBuilt);
            Assert.Equal("no cache yet", first.BuildReason);
            firstIds = first.Ids(0).ToArray();
        }
        var written = File.GetLastWriteTimeUtc(TokenCache.PathFor(data));
        var bytes = File.ReadAllBytes(TokenCache.PathFor(data));

        using var second = TokenCache.OpenOrBuild(data, Tokenizer, options);
        Assert.False(second.WasBuilt);
        Assert.Null(second.BuildReason);
        Assert.Equal(written, File.GetLastWriteTimeUtc(second.Path));
        Assert.Equal(bytes, File.ReadAllBytes(second.Path));
        Assert.Equal(firstIds, second.Ids(0).ToArray());
    }

    [Fact]
    public void Changing_the_data_rebuilds_even_at_the_same_size_and_time()
    {
        var data = WriteData();
        var options = new DataOptions(128);
        using (TokenCache.OpenOrBuild(data, Tokenizer, options)) { }
        var stamp = File.GetLastWriteTimeUtc(data);
        var text = File.ReadAllText(data);
        File.WriteAllText(data, text.Replace("A cat.", "A dog."));
        File.SetLastWriteTimeUtc(data, stamp);
        Assert.Equal(text.Length, new FileInfo(data).Length);

        using var cache = TokenCache.OpenOrBuild(data, Tokenizer, options);
        Assert.True(cache.WasBuilt);
        Assert.Equal("the data file changed", cache.BuildReason);
        Assert.Contains("A dog.", Tokenizer.Decode(cache.Ids(0)));
    }

    [Fact]
    public void Changing_max_seq_length_or_template_rebuilds()
    {
        var data = WriteData();
        using (TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128))) { }

        using (var shorter = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(40)))
        {
            Assert.True(shorter.WasBuilt);
            Assert.Contains("max-seq-length=128", shorter.BuildReason);
            Assert.Contains("max-seq-length=40", shorter.BuildReason);
            Assert.Equal(40, shorter.MaxSeqLength);
            Assert.True(shorter.Counts.Truncated > 0);
        }
        using (var llama3 = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(40) { Template = ChatTemplate.Llama3 }))
        {
            Assert.True(llama3.WasBuilt);
            Assert.Contains("template=llama3;", llama3.BuildReason);
        }
        using var again = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(40) { Template = ChatTemplate.Llama3 });
        Assert.False(again.WasBuilt);
    }

    [Fact]
    public void A_cache_folder_keeps_the_cache_out_of_the_data_folder()
    {
        var data = WriteData();
        var cacheFolder = Path.Combine(_folder.Path, "caches");
        using var cache = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128), cacheFolder);
        Assert.Equal(cacheFolder, Path.GetDirectoryName(cache.Path));
        Assert.StartsWith("data.jsonl.", Path.GetFileName(cache.Path));
        Assert.EndsWith(".rtcache", cache.Path);
        Assert.False(File.Exists(data + ".rtcache"));
        Assert.Equal(4, cache.Count);
    }

    [Theory]
    [InlineData(0, "wrong magic")]
    [InlineData(130, "checksum")]
    [InlineData(5000, null)] // a damaged body with an intact header: the sample offsets are checked on open
    public void A_corrupt_cache_is_reported_by_open_and_rebuilt_by_open_or_build(int offset, string? problem)
    {
        var data = WriteData();
        var options = new DataOptions(128);
        string path;
        using (var built = TokenCache.OpenOrBuild(data, Tokenizer, options)) path = built.Path;
        var bytes = File.ReadAllBytes(path);
        var layoutOffsets = offset == 5000 ? OffsetsSection(bytes) : offset;
        bytes[layoutOffsets] ^= 0x5A;
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<TokenCacheException>(() => TokenCache.Open(path));
        Assert.StartsWith($"{path}: ", error.Message);
        Assert.Contains(problem ?? "corrupt", error.Message);

        using var rebuilt = TokenCache.OpenOrBuild(data, Tokenizer, options);
        Assert.True(rebuilt.WasBuilt);
        Assert.StartsWith("the old cache was unreadable", rebuilt.BuildReason);
        Assert.Equal(4, rebuilt.Count);
    }

    /// <summary>The byte of sample 1's start offset, found from the layout the header describes (ids end, aligned to 8).</summary>
    static int OffsetsSection(byte[] cache)
    {
        long tokens = BitConverter.ToInt64(cache, 144);
        return (int)((4096 + 4 * tokens + 7) / 8 * 8) + 8;
    }

    [Fact]
    public void A_cut_short_cache_is_reported_and_rebuilt()
    {
        var data = WriteData();
        string path;
        using (var built = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128))) path = built.Path;
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var error = Assert.Throws<TokenCacheException>(() => TokenCache.Open(path));
        Assert.Contains("cut short", error.Message);

        File.WriteAllBytes(path, bytes[..100]);
        Assert.Contains("shorter than the 4096-byte header", Assert.Throws<TokenCacheException>(() => TokenCache.Open(path)).Message);

        using var rebuilt = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128));
        Assert.True(rebuilt.WasBuilt);
    }

    [Fact]
    public void A_failed_rebuild_leaves_the_previous_cache_whole_and_no_temporary_files()
    {
        var data = WriteData();
        var options = new DataOptions(128);
        string path;
        using (var built = TokenCache.OpenOrBuild(data, Tokenizer, options)) path = built.Path;
        var before = File.ReadAllBytes(path);

        // The new data fails on its last line, after most of the new cache has been written.
        File.AppendAllText(data, "{\"text\": \"fine\"}\n{broken\n");
        var error = Assert.Throws<DataFormatException>(() => TokenCache.OpenOrBuild(data, Tokenizer, options));
        Assert.Equal(6, error.Line);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["data.jsonl", "data.jsonl.rtcache"], _folder.FileNames());
        using var old = TokenCache.Open(path);
        Assert.Equal(4, old.Count);
    }

    [Fact]
    public void A_cache_mapped_by_one_reader_survives_a_rebuild_by_another()
    {
        var data = WriteData();
        using var reader = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128));
        var ids = reader.Ids(0).ToArray();
        using var rebuilt = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(64)); // renamed over the mapped file
        Assert.True(rebuilt.WasBuilt);
        Assert.Equal(ids, reader.Ids(0).ToArray());
    }

    [Fact]
    public void Line_endings_and_a_byte_order_mark_do_not_change_the_samples()
    {
        var unix = WriteData();
        var windows = _folder.File("windows.jsonl");
        File.WriteAllBytes(windows, [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(File.ReadAllText(unix).Replace("\n", "\r\n"))]);
        using var a = TokenCache.OpenOrBuild(unix, Tokenizer, new DataOptions(128));
        using var b = TokenCache.OpenOrBuild(windows, Tokenizer, new DataOptions(128));
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a.Ids(i).ToArray(), b.Ids(i).ToArray());
            Assert.Equal(a.Targets(i).ToArray(), b.Targets(i).ToArray());
        }
    }

    [Fact]
    public void The_cache_does_not_depend_on_the_number_of_tokenizing_threads()
    {
        var lines = Enumerable.Range(0, 5000).Select(i => Chat($"Question {i}?", $"Answer {i * 7}.")).ToArray();
        var data = _folder.WriteJsonl("many.jsonl", lines);
        string one, many;
        using (var c = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128) { Parallelism = 1 }, Path.Combine(_folder.Path, "one")))
            one = c.Path;
        using (var c = TokenCache.OpenOrBuild(data, Tokenizer, new DataOptions(128) { Parallelism = 4 }, Path.Combine(_folder.Path, "many")))
            many = c.Path;
        Assert.Equal(File.ReadAllBytes(one), File.ReadAllBytes(many));
    }
}
