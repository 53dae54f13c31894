using System.Globalization;
using Microsoft.ML.Tokenizers;

namespace Runtime.Model.Tokenization;

/// <summary>
/// Splits text into the pieces Llama 3's BPE works on, exactly as the regex <see cref="Pattern"/> does in tiktoken
/// (Rust) and Hugging Face tokenizers (Oniguruma): both match on Unicode code points. A .NET <c>Regex</c> matches
/// UTF-16 code units instead, so a character outside the BMP (emoji, math letters, CJK extension B) becomes two
/// surrogates of category Cs: "🙏a" then splits into "🙏" + "a" instead of one piece, and the BPE result differs
/// (tokens such as the emoji's last byte followed by a letter exist in the vocabulary). This hand-written matcher
/// walks code points, taking the regex's alternatives in order with the same greedy/backtracking outcome.
/// </summary>
internal sealed class Llama3PreTokenizer : PreTokenizer
{
    /// <summary>The split regex of Llama 3's tokenizer.json (cl100k's), as the matcher below implements it.</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static readonly Llama3PreTokenizer Instance = new();

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int, int)>(text.Length / 4 + 1);
        for (int i = 0; i < text.Length;)
        {
            int length = MatchAt(text, i);
            pieces.Add((i, length));
            i += length;
        }
        return pieces;
    }

    enum Kind : byte { Letter, Number, Newline, Space, Other }

    /// <summary>Length in chars of the regex match starting at <paramref name="i"/> (never 0: some alternative always matches).</summary>
    static int MatchAt(ReadOnlySpan<char> text, int i)
    {
        // 1: (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (text[i] == '\'')
        {
            int contraction = ContractionLength(text, i);
            if (contraction > 0) return contraction;
        }

        var kind = Classify(text, i, out int width);

        // 2: [^\r\n\p{L}\p{N}]?\p{L}+ (the optional char cannot be a letter, so a letter starts the run itself)
        if (kind == Kind.Letter) return RunEnd(text, i, Kind.Letter) - i;
        if (kind is Kind.Space or Kind.Other && i + width < text.Length && Classify(text, i + width, out _) == Kind.Letter)
            return RunEnd(text, i + width, Kind.Letter) - i;

        // 3: \p{N}{1,3}
        if (kind == Kind.Number)
        {
            int end = i + width;
            for (int n = 1; n < 3 && end < text.Length && Classify(text, end, out int w) == Kind.Number; n++) end += w;
            return end - i;
        }

        // 4:  ?[^\s\p{L}\p{N}]+[\r\n]*
        int punctuationStart = kind == Kind.Other ? i
            : text[i] == ' ' && i + 1 < text.Length && Classify(text, i + 1, out _) == Kind.Other ? i + 1
            : -1;
        if (punctuationStart >= 0)
        {
            int end = RunEnd(text, punctuationStart, Kind.Other);
            while (end < text.Length && text[end] is '\r' or '\n') end++;
            return end - i;
        }

        // What is left starts with whitespace. Every White_Space character is in the BMP, so chars = code points here.
        int spaceEnd = i, lastNewline = -1;
        while (spaceEnd < text.Length && char.IsWhiteSpace(text[spaceEnd]))
        {
            if (text[spaceEnd] is '\r' or '\n') lastNewline = spaceEnd;
            spaceEnd++;
        }
        // 5: \s*[\r\n]+ (\s* backtracks to the last line break of the whitespace run)
        if (lastNewline >= 0) return lastNewline + 1 - i;
        // 6: \s+(?!\S) (at the end of the text the whole run; before a non-space it leaves the last space to the next piece)
        if (spaceEnd == text.Length) return spaceEnd - i;
        if (spaceEnd - i >= 2) return spaceEnd - 1 - i;
        // 7: \s+
        return spaceEnd - i;
    }

    /// <summary>Regex (?i) folds case by Unicode rules, so the long s (U+017F) matches 's' too.</summary>
    static int ContractionLength(ReadOnlySpan<char> text, int i)
    {
        if (i + 1 >= text.Length) return 0;
        char a = text[i + 1];
        if (a is 's' or 'S' or '\u017F' or 't' or 'T' or 'm' or 'M' or 'd' or 'D') return 2;
        if (i + 2 >= text.Length) return 0;
        char b = text[i + 2];
        if ((a is 'r' or 'R' or 'v' or 'V') && b is 'e' or 'E') return 3;
        if ((a is 'l' or 'L') && b is 'l' or 'L') return 3;
        return 0;
    }

    static int RunEnd(ReadOnlySpan<char> text, int start, Kind kind)
    {
        int end = start;
        while (end < text.Length && Classify(text, end, out int w) == kind) end += w;
        return end;
    }

    static readonly Kind[] AsciiKinds = BuildAsciiKinds();

    static Kind[] BuildAsciiKinds()
    {
        var kinds = new Kind[128];
        for (int c = 0; c < 128; c++) kinds[c] = ClassifyBmp((char)c);
        return kinds;
    }

    static Kind Classify(ReadOnlySpan<char> text, int i, out int width)
    {
        char c = text[i];
        width = 1;
        if (c < 128) return AsciiKinds[c];
        if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            width = 2;
            return FromCategory(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(c, text[i + 1])));
        }
        return ClassifyBmp(c); // a lone surrogate is category Cs: Other
    }

    static Kind ClassifyBmp(char c) =>
        c is '\r' or '\n' ? Kind.Newline
        : char.IsWhiteSpace(c) ? Kind.Space
        : FromCategory(CharUnicodeInfo.GetUnicodeCategory(c));

    static Kind FromCategory(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Kind.Letter,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Kind.Number,
        _ => Kind.Other,
    };
}
