using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

public sealed class Llama3PreTokenizerTests
{
    static List<string> Pieces(string text) =>
        Llama3PreTokenizer.Split(text).Select(p => text.Substring(p.Offset, p.Length)).ToList();

    [Theory]
    [InlineData("Hello world", new[] { "Hello", " world" })]
    [InlineData("I'm here, aren't you?", new[] { "I", "'m", " here", ",", " aren", "'t", " you", "?" })]
    [InlineData("'sorry", new[] { "'s", "orry" })]
    [InlineData("12345 678", new[] { "123", "45", " ", "678" })]
    [InlineData("  hello", new[] { " ", " hello" })]
    [InlineData("\thello", new[] { "\thello" })]
    [InlineData("a\n\n b", new[] { "a", "\n\n", " b" })]
    [InlineData("x  \n  y", new[] { "x", "  \n", " ", " y" })]
    [InlineData("end   ", new[] { "end", "   " })]
    [InlineData("!!!\n\nok", new[] { "!!!\n\n", "ok" })]
    [InlineData(" ...", new[] { " ..." })]
    [InlineData("\n\nHello", new[] { "\n\n", "Hello" })]
    // Outside the BMP: one code point each, as tiktoken and Hugging Face see them.
    [InlineData("🙏a", new[] { "🙏a" })]
    [InlineData("😀😀 👍Great", new[] { "😀😀", " 👍", "Great" })]
    [InlineData("𝐀𝐁 x", new[] { "𝐀𝐁", " x" })]
    [InlineData("𝟏𝟐𝟑𝟒", new[] { "𝟏𝟐𝟑", "𝟒" })]
    [InlineData(" 𠀀abc", new[] { " 𠀀abc" })]
    // (?i) folds the long s to s.
    [InlineData("'ſ", new[] { "'ſ" })]
    public void Splits_like_the_regex_on_code_points(string text, string[] expected) =>
        Assert.Equal(expected, Pieces(text));

    [Fact]
    public void Matches_the_reference_regex_on_a_multilingual_text() =>
        Assert.Equal(ReferencePreTokenizer.Pieces(TokenizerTestTexts.Multilingual), Pieces(TokenizerTestTexts.Multilingual));

    [Fact]
    public void Matches_the_reference_regex_on_random_strings()
    {
        foreach (var text in TokenizerTestTexts.Fuzz(seed: 17, count: 3000))
            Assert.True(ReferencePreTokenizer.Pieces(text).SequenceEqual(Pieces(text)),
                $"pieces differ for \"{Escape(text)}\": expected [{string.Join("|", ReferencePreTokenizer.Pieces(text).Select(Escape))}], " +
                $"got [{string.Join("|", Pieces(text).Select(Escape))}]");
    }

    [Fact]
    public void A_lone_surrogate_is_neither_letter_nor_number()
    {
        var text = "a\uD83Db";  // a high surrogate without its pair
        Assert.Equal(new[] { "a", "\uD83Db" }, Pieces(text));
    }

    static string Escape(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\t", "\\t");
}
