using System.Text;

namespace Runtime.Model.Tests.Tokenization;

/// <summary>Texts that exercise every branch of Llama 3's pre-tokenization and the byte-level BPE.</summary>
internal static class TokenizerTestTexts
{
    public const string Multilingual =
        "The quick brown fox can't jump over 1234567 lazy dogs; they'RE tired, aren't they? I'll see—we'd hope.\n" +
        "Français : « Ça va ? » Ünïcödé façade, naïve café.\r\n" +
        "Русский текст с цифрами 2024 и знаками препинания!!!\n\n\n" +
        "中文：你好，世界。日本語のテキスト、カタカナとひらがな。한국어 문장입니다.\n" +
        "العربية: مرحبا بالعالم ١٢٣٤ — עברית: שלום עולם\n" +
        "हिन्दी में वाक्य। ภาษาไทย ไม่มีช่องว่าง\n" +
        "Emoji: 🙏a 😀😀 👍Great 🎉🎉🎉! 👨‍👩‍👧‍👦 family, flags 🇫🇷🇯🇵, keycap 1️⃣.\n" +
        "Math 𝐀𝐁𝐂 𝟏𝟐𝟑𝟒 and CJK ext-B 𠀀𠀁abc.\n" +
        "    indented code():\n\treturn x  +  y   \n  \n\n" +
        "trailing spaces   \t \u00A0\u2003 nbsp and em space; ½ ⅓ Ⅻ numbers\n" +
        "'s 'S 'll 'LL 'Re 've 'd 'm 't '' ''' quotes\n" +
        "URL https://example.com/path?q=1&r=2#frag and email a.b@c.org\n" +
        "   \n\n   ";

    /// <summary>Random strings from pieces chosen to collide at pre-token boundaries (seeded: the same every run).</summary>
    public static IEnumerable<string> Fuzz(int seed, int count, int pieces = 12)
    {
        string[] atoms =
        [
            "a", "Z", "hello", "World", "é", "ß", "Ω", "日本", "한", "ไทย", "ع", "0", "7", "123", "٣", "½", "Ⅻ",
            " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00A0", "\u2003", "\u3000", "\u0085", "\u2028",
            "'", "'s", "'LL", "'re", "'Ve", "'m", "'d", "'T", "!", "?!", "...", "—", "«", "\"", "(", ")", "_", "-", "/",
            "🙏", "😀", "👍", "🎉", "👨‍👩‍👧", "🇫🇷", "𝐀", "𝟏", "𠀀", "\u200D", "\uFE0F",
        ];
        var random = new Random(seed);
        for (int n = 0; n < count; n++)
        {
            var text = new StringBuilder();
            int length = random.Next(1, pieces + 1);
            for (int i = 0; i < length; i++) text.Append(atoms[random.Next(atoms.Length)]);
            yield return text.ToString();
        }
    }
}
