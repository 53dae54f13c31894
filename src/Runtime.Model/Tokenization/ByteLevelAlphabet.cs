namespace Runtime.Model.Tokenization;

/// <summary>
/// GPT-2's byte-to-unicode mapping, which Hugging Face's byte-level BPE uses to write token bytes as printable
/// strings in tokenizer.json: the 188 printable Latin-1 bytes stand for themselves and the other 68 bytes
/// (controls, space, DEL, NBSP, soft hyphen, ...) are shifted, in byte order, to U+0100..U+0143.
/// </summary>
internal static class ByteLevelAlphabet
{
    static readonly int[] ByteOfChar = BuildInverse();

    static int[] BuildInverse()
    {
        var byteOfChar = new int[256 + 68];
        Array.Fill(byteOfChar, -1);
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            byteOfChar[printable ? b : 256 + shifted++] = b;
        }
        return byteOfChar;
    }

    /// <summary>The bytes a tokenizer.json vocabulary string stands for, or null if it uses a character outside the alphabet.</summary>
    public static byte[]? Decode(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int c = token[i];
            if (c >= ByteOfChar.Length || ByteOfChar[c] < 0) return null;
            bytes[i] = (byte)ByteOfChar[c];
        }
        return bytes;
    }
}
