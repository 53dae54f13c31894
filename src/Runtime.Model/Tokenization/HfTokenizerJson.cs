using System.Text.Json;

namespace Runtime.Model.Tokenization;

/// <summary>
/// Reads a Hugging Face tokenizer.json of the Llama 3 family: a byte-level BPE whose vocabulary strings are token
/// bytes written in GPT-2's byte-to-unicode alphabet, with rank = id, plus the special tokens in <c>added_tokens</c>.
/// The merges list is not needed: Llama 3's merges were derived from the tiktoken ranks, so merging by rank is the
/// same algorithm.
/// </summary>
internal static class HfTokenizerJson
{
    public static Llama3Vocabulary Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such tokenizer file", path);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new TokenizerFormatException($"{path}: not a JSON object");
            var ranks = ReadModel(root, path);
            CheckPreTokenizer(root, path);
            var names = ReadSpecialNames(root, path);
            return new Llama3Vocabulary(ranks, names, path).Validate();
        }
    }

    static byte[][] ReadModel(JsonElement root, string path)
    {
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new TokenizerFormatException($"{path}: no 'model' object");
        if (model.TryGetProperty("type", out var type) && type.GetString() != "BPE")
            throw new TokenizerFormatException($"{path}: 'model.type' is \"{type}\"; a Llama 3 tokenizer is \"BPE\"");
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new TokenizerFormatException($"{path}: no 'model.vocab' object");

        var ranks = new byte[Llama3Vocabulary.RankCount][];
        int count = 0;
        foreach (var entry in vocab.EnumerateObject())
        {
            count++;
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
                throw new TokenizerFormatException($"{path}: 'model.vocab' entry \"{entry.Name}\" has a non-integer id ({entry.Value})");
            if (id < 0 || id >= Llama3Vocabulary.RankCount)
                throw new TokenizerFormatException(
                    $"{path}: 'model.vocab' entry \"{entry.Name}\" has id {id}; a Llama 3 tokenizer has BPE ids 0..{Llama3Vocabulary.RankCount - 1}");
            if (ranks[id] is not null) throw new TokenizerFormatException($"{path}: 'model.vocab' has id {id} twice");
            ranks[id] = ByteLevelAlphabet.Decode(entry.Name)
                        ?? throw new TokenizerFormatException(
                            $"{path}: 'model.vocab' entry \"{entry.Name}\" (id {id}) is not written in the byte-level alphabet");
        }
        if (count != Llama3Vocabulary.RankCount)
            throw new TokenizerFormatException(
                $"{path}: 'model.vocab' has {count} entries; a Llama 3 tokenizer has {Llama3Vocabulary.RankCount}");
        return ranks;
    }

    /// <summary>
    /// A tokenizer.json with another split regex (GPT-2's, Qwen's, ...) would tokenize differently from what this
    /// class does, so it is rejected rather than silently mis-tokenized.
    /// </summary>
    static void CheckPreTokenizer(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object) return;
        foreach (var pattern in SplitPatterns(pre))
        {
            if (pattern != Llama3PreTokenizer.Pattern)
                throw new TokenizerFormatException(
                    $"{path}: the pre-tokenizer splits with /{pattern}/, not Llama 3's /{Llama3PreTokenizer.Pattern}/");
        }
    }

    static IEnumerable<string> SplitPatterns(JsonElement pre)
    {
        if (pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in list.EnumerateArray())
            foreach (var p in SplitPatterns(item))
                yield return p;
        }
        if (pre.TryGetProperty("type", out var type) && type.GetString() == "Split"
            && pre.TryGetProperty("pattern", out var pattern) && pattern.ValueKind == JsonValueKind.Object
            && pattern.TryGetProperty("Regex", out var regex))
            yield return regex.GetString() ?? "";
    }

    static string[] ReadSpecialNames(JsonElement root, string path)
    {
        var names = new string[Llama3SpecialTokens.Count];
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
        {
            int index = 0;
            foreach (var token in added.EnumerateArray())
            {
                if (!token.TryGetProperty("id", out var idElement) || !idElement.TryGetInt32(out int id)
                    || !token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                    throw new TokenizerFormatException($"{path}: 'added_tokens[{index}]' needs an integer 'id' and a string 'content'");
                if (id < Llama3SpecialTokens.First || id >= Llama3SpecialTokens.First + Llama3SpecialTokens.Count)
                    throw new TokenizerFormatException(
                        $"{path}: 'added_tokens[{index}]' (\"{content.GetString()}\") has id {id}; Llama 3 special tokens are " +
                        $"{Llama3SpecialTokens.First}..{Llama3SpecialTokens.First + Llama3SpecialTokens.Count - 1}");
                names[id - Llama3SpecialTokens.First] = content.GetString()!;
                index++;
            }
        }
        for (int i = 0; i < names.Length; i++)
            names[i] ??= Llama3SpecialTokens.DefaultName(Llama3SpecialTokens.First + i);
        return names;
    }
}
