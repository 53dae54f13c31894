using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

public sealed class Llama3TokenizerTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>
{
    readonly Llama3Tokenizer _tokenizer = fixture.Tokenizer;

    [Fact]
    public void Hello_world_gives_the_published_ids() =>
        Assert.Equal(new[] { 9906, 1917 }, _tokenizer.Encode("Hello world", allowSpecial: false));

    [Fact]
    public void Chat_words_give_their_vocabulary_ids()
    {
        // Ids read straight from tokenizer.json's vocab ("ĊĊ" is "\n\n" in the byte-level alphabet).
        Assert.Equal(new[] { 9125 }, _tokenizer.Encode("system", false));
        Assert.Equal(new[] { 882 }, _tokenizer.Encode("user", false));
        Assert.Equal(new[] { 78191 }, _tokenizer.Encode("assistant", false));
        Assert.Equal(new[] { 271 }, _tokenizer.Encode("\n\n", false));
    }

    [Fact]
    public void An_emoji_followed_by_a_letter_is_one_piece_as_in_tiktoken()
    {
        // Computed separately (Python, rank-merging BPE over tokenizer.json's vocab): 112865 is the emoji's last byte
        // joined with "a", which only happens when "🙏a" is pre-tokenized as one piece.
        Assert.Equal(new[] { 9468, 247, 112865 }, _tokenizer.Encode("🙏a", false));
    }

    [Fact]
    public void Vocabulary_and_special_ids()
    {
        Assert.Equal(128256, _tokenizer.VocabSize);
        Assert.Equal(128000, _tokenizer.BeginOfText);
        Assert.Equal(128001, _tokenizer.EndOfText);
        Assert.Equal(128004, _tokenizer.FinetuneRightPad);
        Assert.Equal(128006, _tokenizer.StartHeader);
        Assert.Equal(128007, _tokenizer.EndHeader);
        Assert.Equal(128008, _tokenizer.EomId);
        Assert.Equal(128009, _tokenizer.EotId);
        Assert.Equal("<|begin_of_text|>", _tokenizer.SpecialTokenName(_tokenizer.BeginOfText));
        Assert.Equal("<|end_of_text|>", _tokenizer.SpecialTokenName(_tokenizer.EndOfText));
        Assert.Equal("<|start_header_id|>", _tokenizer.SpecialTokenName(_tokenizer.StartHeader));
        Assert.Equal("<|end_header_id|>", _tokenizer.SpecialTokenName(_tokenizer.EndHeader));
        Assert.Equal("<|eot_id|>", _tokenizer.SpecialTokenName(_tokenizer.EotId));
        // This package is Llama 3's file, where 128008 is still reserved: names come from the file, ids are fixed.
        Assert.Equal("<|reserved_special_token_4|>", _tokenizer.SpecialTokenName(128008));
        Assert.False(_tokenizer.IsSpecial(127999));
        Assert.True(_tokenizer.IsSpecial(128000));
        Assert.True(_tokenizer.IsSpecial(128255));
        Assert.False(_tokenizer.IsSpecial(128256));
    }

    [Fact]
    public void Begin_of_text_is_one_token_when_specials_are_allowed() =>
        Assert.Equal(new[] { 128000 }, _tokenizer.Encode("<|begin_of_text|>", allowSpecial: true));

    [Fact]
    public void Every_special_token_encodes_and_decodes_by_name_only_when_allowed()
    {
        for (int id = 128000; id < 128256; id++)
        {
            var name = _tokenizer.SpecialTokenName(id);
            Assert.StartsWith("<|", name);
            Assert.Equal(new[] { id }, _tokenizer.Encode(name, allowSpecial: true));
            Assert.Equal(name, _tokenizer.Decode(new[] { id }));
            Assert.True(_tokenizer.TryGetSpecialTokenId(name, out int found) && found == id);

            var plain = _tokenizer.Encode(name, allowSpecial: false);
            Assert.True(plain.Length > 1, $"{name} as plain text should take several tokens");
            Assert.DoesNotContain(plain, t => t >= 128000);
            Assert.Equal(name, _tokenizer.Decode(plain));
        }
    }

    [Fact]
    public void Special_tokens_split_the_text_around_them()
    {
        var ids = _tokenizer.Encode("Hi<|eot_id|><|start_header_id|>user", allowSpecial: true);
        Assert.Equal(_tokenizer.Encode("Hi", false).Concat([128009, 128006]).Concat(_tokenizer.Encode("user", false)), ids);
        Assert.Equal(_tokenizer.Encode("<|<|eot_id|>", true), _tokenizer.Encode("<|", false).Append(128009));
    }

    [Fact]
    public void Special_tokens_survive_many_distinct_words()
    {
        // Microsoft.ML.Tokenizers keeps special tokens only in an 8192-entry LRU word cache; flooding it must not
        // turn <|eot_id|> into plain text.
        for (int i = 0; i < 10_000; i++) _tokenizer.Encode($"w{i}x", allowSpecial: true);
        Assert.Equal(new[] { 128009 }, _tokenizer.Encode("<|eot_id|>", allowSpecial: true));
    }

    [Theory]
    [InlineData(TokenizerTestTexts.Multilingual)]
    [InlineData("")]
    [InlineData("   \n\n\t\t  \r\n \u00A0 ")]
    [InlineData("👨‍👩‍👧‍👦🇫🇷🙏a𝐀𠀀 end")]
    public void Decode_inverts_encode(string text) =>
        Assert.Equal(text, _tokenizer.Decode(_tokenizer.Encode(text, allowSpecial: false)));

    [Fact]
    public void A_lone_surrogate_is_encoded_as_a_replacement_character()
    {
        var ids = _tokenizer.Encode("a\uD83Db\uDE4F", allowSpecial: false);
        Assert.Equal(_tokenizer.Encode("a\uFFFDb\uFFFD", allowSpecial: false), ids);
        Assert.Equal("a\uFFFDb\uFFFD", _tokenizer.Decode(ids));
    }

    [Fact]
    public void Encode_matches_a_naive_merges_based_bpe()
    {
        var reference = new ReferenceBpe(fixture.TokenizerJsonPath);
        var texts = TokenizerTestTexts.Fuzz(seed: 5, count: 1500).Prepend(TokenizerTestTexts.Multilingual);
        foreach (var text in texts)
            Assert.True(reference.Encode(text).SequenceEqual(_tokenizer.Encode(text, false)),
                $"ids differ for \"{text}\": expected [{string.Join(",", reference.Encode(text))}], got [{string.Join(",", _tokenizer.Encode(text, false))}]");
    }

    [Fact]
    public void A_character_split_across_tokens_decodes_whole_or_as_replacement()
    {
        var ids = _tokenizer.Encode("🙏", false);                      // F0 9F 99 8F in three tokens, 8F alone last
        Assert.Equal(new byte[] { 0x8F }, _tokenizer.TokenBytes(ids[^1]).ToArray());
        Assert.Equal("🙏", _tokenizer.Decode(ids));
        Assert.Equal("\uFFFD", _tokenizer.Decode(ids[..^1]));           // a cut-off sequence
        Assert.Equal("\uFFFD<|eot_id|>\uFFFD", _tokenizer.Decode([.. ids[..^1], 128009, ids[^1]]));
    }

    [Fact]
    public void Decode_can_skip_special_tokens()
    {
        var ids = _tokenizer.Encode("<|begin_of_text|>Hi<|eot_id|>", allowSpecial: true);
        Assert.Equal("<|begin_of_text|>Hi<|eot_id|>", _tokenizer.Decode(ids));
        Assert.Equal("Hi", _tokenizer.Decode(ids, skipSpecial: true));
        Assert.Equal("Hi", _tokenizer.Decode(new List<int>(ids), skipSpecial: true));
    }

    [Fact]
    public void Decode_rejects_ids_outside_the_vocabulary()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => _tokenizer.Decode([9906, 128256]));
        Assert.Contains("position 1", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => _tokenizer.Decode([-1]));
    }

    [Fact]
    public void Token_bytes_are_the_raw_bytes()
    {
        Assert.Equal(" world"u8.ToArray(), _tokenizer.TokenBytes(1917).ToArray());
        Assert.Equal("<|eot_id|>"u8.ToArray(), _tokenizer.TokenBytes(128009).ToArray());
    }
}
