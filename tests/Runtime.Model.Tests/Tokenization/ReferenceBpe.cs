using System.Text;
using System.Text.Json;

namespace Runtime.Model.Tests.Tokenization;

/// <summary>
/// A deliberately naive Hugging Face-style byte-level BPE, written independently of the tokenizer under test: it reads
/// tokenizer.json's vocab AND its merges list (which the tokenizer under test ignores, using ranks instead), maps bytes
/// to GPT-2's printable alphabet, and applies the lowest-ranked merge until none applies (whole words found in the vocab
/// are taken as they are: Llama 3's "ignore_merges"). Pre-tokenization comes from <see cref="ReferencePreTokenizer"/>.
/// Slow, and only for checking ids in tests.
/// </summary>
internal sealed class ReferenceBpe
{
    readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);
    readonly Dictionary<(string, string), int> _mergeRank = new();
    readonly char[] _charOfByte = new char[256];

    public ReferenceBpe(string tokenizerJson)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(tokenizerJson));
        var model = document.RootElement.GetProperty("model");
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) _vocab[entry.Name] = entry.Value.GetInt32();
        int rank = 0;
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
        {
            string left, right;
            if (merge.ValueKind == JsonValueKind.Array)
            {
                left = merge[0].GetString()!;
                right = merge[1].GetString()!;
            }
            else
            {
                var parts = merge.GetString()!.Split(' ');
                (left, right) = (parts[0], parts[1]);
            }
            _mergeRank.TryAdd((left, right), rank++);
        }

        // GPT-2's bytes_to_unicode, written out: printable ranges keep their code, the rest go to 256, 257, ...
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1))
            .Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1)).ToHashSet();
        int next = 256;
        for (int b = 0; b < 256; b++) _charOfByte[b] = printable.Contains(b) ? (char)b : (char)next++;
    }

    public char CharOfByte(byte b) => _charOfByte[b];

    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        foreach (var piece in ReferencePreTokenizer.Pieces(text)) ids.AddRange(EncodeWord(piece));
        return ids;
    }

    IEnumerable<int> EncodeWord(string word)
    {
        var mapped = new string(Encoding.UTF8.GetBytes(word).Select(b => _charOfByte[b]).ToArray());
        if (_vocab.TryGetValue(mapped, out int whole)) return [whole];
        var symbols = mapped.Select(c => c.ToString()).ToList();
        while (symbols.Count > 1)
        {
            int bestRank = int.MaxValue, bestAt = -1;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (_mergeRank.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank)
                    (bestRank, bestAt) = (r, i);
            if (bestAt < 0) break;
            symbols[bestAt] += symbols[bestAt + 1];
            symbols.RemoveAt(bestAt + 1);
        }
        return symbols.Select(s => _vocab.TryGetValue(s, out int id) ? id
            : throw new InvalidOperationException($"reference BPE produced \"{s}\", which is not in the vocab"));
    }
}
