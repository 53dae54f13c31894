using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Runtime.Model.Tokenization;

/// <summary>
/// The Llama 3 tokenizer (3, 3.1, 3.2, 3.3): tiktoken-style byte-level BPE over 128,000 ranks, then 256 special
/// tokens (ids 128000..128255). The BPE is Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/> fed with
/// <see cref="Llama3PreTokenizer"/> (code-point exact, unlike a .NET Regex). Special tokens are split out here rather
/// than registered with that tokenizer, because it remembers special tokens only in its LRU word cache, which evicts
/// them after 8192 other distinct words (they would then be encoded as plain text); the BPE sees the 128,000 ranks only.
/// Decoding is done here from the token bytes. Thread-safe: the state is immutable and the BPE's cache is locked.
/// </summary>
public sealed partial class Llama3Tokenizer
{
    readonly TiktokenTokenizer _bpe;
    readonly byte[][] _tokenBytes;            // every id: BPE bytes, or the UTF-8 of a special token's name
    readonly string[] _specialNames;
    readonly Dictionary<string, int> _specialIds;
    readonly SearchValues<string> _specialSearch;

    Llama3Tokenizer(Llama3Vocabulary vocabulary)
    {
        Source = vocabulary.Source;
        using (var ranks = new MemoryStream(TiktokenModelFile.Serialize(vocabulary.RankBytes)))
            _bpe = TiktokenTokenizer.Create(ranks, Llama3PreTokenizer.Instance, normalizer: null, specialTokens: null);

        _specialNames = vocabulary.SpecialNames;
        _specialIds = new Dictionary<string, int>(StringComparer.Ordinal);
        _tokenBytes = new byte[VocabSize][];
        vocabulary.RankBytes.CopyTo(_tokenBytes, 0);
        for (int i = 0; i < _specialNames.Length; i++)
        {
            int id = Llama3SpecialTokens.First + i;
            _specialIds.Add(_specialNames[i], id);
            _tokenBytes[id] = Encoding.UTF8.GetBytes(_specialNames[i]);
        }
        _specialSearch = SearchValues.Create(_specialNames, StringComparison.Ordinal);
    }

    /// <summary>The file this tokenizer was loaded from.</summary>
    public string Source { get; }

    /// <summary>128,000 BPE ranks + 256 special tokens.</summary>
    public int VocabSize => Llama3Vocabulary.RankCount + Llama3SpecialTokens.Count;

    public int BeginOfText => Llama3SpecialTokens.BeginOfText;
    public int EndOfText => Llama3SpecialTokens.EndOfText;
    public int FinetuneRightPad => Llama3SpecialTokens.FinetuneRightPad;
    public int StartHeader => Llama3SpecialTokens.StartHeader;
    public int EndHeader => Llama3SpecialTokens.EndHeader;
    public int EomId => Llama3SpecialTokens.EomId;
    public int EotId => Llama3SpecialTokens.EotId;
    public int PythonTag => Llama3SpecialTokens.PythonTag;

    public bool IsSpecial(int id) => id >= Llama3SpecialTokens.First && id < VocabSize;

    /// <summary>The name the tokenizer file gives a special token (e.g. "&lt;|eot_id|&gt;").</summary>
    public string SpecialTokenName(int id) =>
        IsSpecial(id) ? _specialNames[id - Llama3SpecialTokens.First]
            : throw new ArgumentOutOfRangeException(nameof(id), id, "not a special token id");

    public bool TryGetSpecialTokenId(string name, out int id) => _specialIds.TryGetValue(name, out id);

    /// <summary>The raw bytes of a token (a special token's are its name in UTF-8); for streaming decoders.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => _tokenBytes[CheckId(id, 0)];

    /// <summary>
    /// Encodes text without adding BOS. With <paramref name="allowSpecial"/> the exact names of special tokens become
    /// their ids (as Hugging Face does for added tokens); without it they are plain text, which is what user-supplied
    /// content must get so that a typed "&lt;|eot_id|&gt;" cannot end a turn.
    /// </summary>
    public int[] Encode(string text, bool allowSpecial)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text.AsSpan(), allowSpecial, ids);
        return ids.ToArray();
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> text, bool allowSpecial, List<int> ids)
    {
        // A lone surrogate has no UTF-8 form (the BPE would see CESU-8 bytes); tiktoken replaces it with U+FFFD first.
        if (HasLoneSurrogate(text)) text = ReplaceLoneSurrogates(text);
        if (allowSpecial)
        {
            int at;
            while ((at = text.IndexOfAny(_specialSearch)) >= 0)
            {
                EncodeOrdinary(text[..at], ids);
                int id = LongestSpecialAt(text[at..], out int length);
                ids.Add(id);
                text = text[(at + length)..];
            }
        }
        EncodeOrdinary(text, ids);
    }

    static bool HasLoneSurrogate(ReadOnlySpan<char> text)
    {
        for (int i = text.IndexOfAnyInRange('\uD800', '\uDFFF'); i >= 0 && i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else if (char.IsSurrogate(text[i])) return true;
        }
        return false;
    }

    static string ReplaceLoneSurrogates(ReadOnlySpan<char> text)
    {
        var chars = text.ToArray();
        for (int i = 0; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1])) i++;
            else if (char.IsSurrogate(chars[i])) chars[i] = '\uFFFD';
        }
        return new string(chars);
    }

    void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        if (!text.IsEmpty) ids.AddRange(_bpe.EncodeToIds(text));
    }

    /// <summary>Hugging Face matches added tokens leftmost-longest; names may share prefixes in other tokenizer files.</summary>
    int LongestSpecialAt(ReadOnlySpan<char> text, out int length)
    {
        int best = -1;
        length = 0;
        for (int i = 0; i < _specialNames.Length; i++)
        {
            var name = _specialNames[i];
            if (name.Length > length && text.StartsWith(name, StringComparison.Ordinal))
            {
                best = Llama3SpecialTokens.First + i;
                length = name.Length;
            }
        }
        return best;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecial = false) =>
        ids is int[] array ? Decode(array.AsSpan(), skipSpecial)
        : ids is List<int> list ? Decode(CollectionsMarshal.AsSpan(list), skipSpecial)
        : Decode(ids.ToArray().AsSpan(), skipSpecial);

    /// <summary>
    /// Decodes ids to text; special tokens appear by name unless <paramref name="skipSpecial"/>. The bytes of all tokens
    /// are joined before UTF-8 decoding, so a character split across tokens comes out whole; bytes that do not form
    /// valid UTF-8 (a sequence cut short, as at the end of a truncated generation) become U+FFFD, as with Hugging Face's
    /// errors="replace". No clean-up of spaces before punctuation is applied, so decoding inverts encoding exactly.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = false)
    {
        int byteCount = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = CheckId(ids[i], i);
            if (!(skipSpecial && IsSpecial(id))) byteCount += _tokenBytes[id].Length;
        }
        var buffer = ArrayPool<byte>.Shared.Rent(byteCount);
        try
        {
            int at = 0;
            foreach (int id in ids)
            {
                if (skipSpecial && IsSpecial(id)) continue;
                _tokenBytes[id].CopyTo(buffer, at);
                at += _tokenBytes[id].Length;
            }
            return Encoding.UTF8.GetString(buffer, 0, byteCount);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    int CheckId(int id, int position) =>
        (uint)id < (uint)VocabSize ? id
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id at position {position} is outside the vocabulary (0..{VocabSize - 1})");
}
