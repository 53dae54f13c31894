using System.Text;

namespace Runtime.Model.Tokenization;

/// <summary>
/// Meta's <c>original/tokenizer.model</c>: tiktoken's BPE file, one <c>base64(token bytes) rank</c> per line. It has no
/// special tokens; Meta's tokenizer appends them after the last rank, so their names are the defaults.
/// </summary>
internal static class TiktokenModelFile
{
    public static Llama3Vocabulary Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such tokenizer file", path);
        var ranks = new byte[Llama3Vocabulary.RankCount][];
        int lineNumber = 0, count = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || line.IndexOf(' ', space + 1) >= 0 || !int.TryParse(line.AsSpan(space + 1), out int rank))
                throw new TokenizerFormatException($"{path}:{lineNumber}: expected \"<base64 bytes> <rank>\"");
            if (rank < 0 || rank >= Llama3Vocabulary.RankCount)
                throw new TokenizerFormatException(
                    $"{path}:{lineNumber}: rank {rank} is outside 0..{Llama3Vocabulary.RankCount - 1} (not a Llama 3 tokenizer?)");
            if (ranks[rank] is not null) throw new TokenizerFormatException($"{path}:{lineNumber}: rank {rank} appears twice");
            try
            {
                ranks[rank] = Convert.FromBase64String(line[..space]);
            }
            catch (FormatException)
            {
                throw new TokenizerFormatException($"{path}:{lineNumber}: \"{line[..space]}\" is not base64");
            }
            count++;
        }
        if (count != Llama3Vocabulary.RankCount)
            throw new TokenizerFormatException($"{path}: {count} ranks; a Llama 3 tokenizer has {Llama3Vocabulary.RankCount}");
        var names = new string[Llama3SpecialTokens.Count];
        for (int i = 0; i < names.Length; i++) names[i] = Llama3SpecialTokens.DefaultName(Llama3SpecialTokens.First + i);
        return new Llama3Vocabulary(ranks, names, path).Validate();
    }

    /// <summary>The file's content for the given ranks; also the stream Microsoft.ML.Tokenizers loads.</summary>
    public static byte[] Serialize(IReadOnlyList<byte[]> rankBytes)
    {
        var text = new StringBuilder(rankBytes.Count * 12);
        for (int rank = 0; rank < rankBytes.Count; rank++)
            text.Append(Convert.ToBase64String(rankBytes[rank])).Append(' ').Append(rank).Append('\n');
        return Encoding.ASCII.GetBytes(text.ToString());
    }
}
