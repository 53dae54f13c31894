using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Runtime.Model.Tests.Tokenization;

/// <summary>
/// An independent reference for Llama 3's pre-tokenization: the split regex run by .NET's Regex, made code-point exact
/// by first replacing every character outside the BMP with a BMP stand-in of the same regex class (a letter, a number,
/// or neither), so each code point is one char; the match spans are then mapped back to the original string.
/// </summary>
internal static class ReferencePreTokenizer
{
    const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    static readonly Regex Split = new(Pattern, RegexOptions.CultureInvariant);

    public static List<string> Pieces(string text)
    {
        var projected = new StringBuilder();
        var charOffsets = new List<int>();          // where each projected char starts in the original text
        for (int i = 0; i < text.Length;)
        {
            charOffsets.Add(i);
            if (char.IsSurrogatePair(text, i))
            {
                var category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                projected.Append(category switch
                {
                    UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                        or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => '\uA000',     // YI SYLLABLE IT (Lo)
                    UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '\u00BD', // ½ (No)
                    _ => '\u00A4',                                                                       // ¤ (Sc)
                });
                i += 2;
            }
            else
            {
                projected.Append(text[i]);
                i++;
            }
        }
        charOffsets.Add(text.Length);

        var pieces = new List<string>();
        int covered = 0;
        foreach (Match match in Split.Matches(projected.ToString()))
        {
            if (match.Index != covered) throw new InvalidOperationException($"regex left a gap at {match.Index}");
            int start = charOffsets[match.Index], end = charOffsets[match.Index + match.Length];
            pieces.Add(text[start..end]);
            covered = match.Index + match.Length;
        }
        return pieces;
    }
}
