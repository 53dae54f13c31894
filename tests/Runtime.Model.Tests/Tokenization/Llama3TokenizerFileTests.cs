using System.Text;
using System.Text.Json;
using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

public sealed class Llama3TokenizerFileTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>, IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("runtime-tokenizer-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>tokenizer.json's vocab as a tiktoken file, converted here with the test's own byte alphabet (once).</summary>
    static readonly Lazy<byte[]> TiktokenModel = new(() =>
    {
        var reference = new ReferenceBpe(TokenizerDownload.TokenizerJson);
        var byteOfChar = Enumerable.Range(0, 256).ToDictionary(b => reference.CharOfByte((byte)b), b => (byte)b);
        using var document = JsonDocument.Parse(File.ReadAllBytes(TokenizerDownload.TokenizerJson));
        var lines = document.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject()
            .Select(e => (Id: e.Value.GetInt32(), Bytes: e.Name.Select(c => byteOfChar[c]).ToArray()))
            .OrderBy(e => e.Id)
            .Select(e => $"{Convert.ToBase64String(e.Bytes)} {e.Id}\n");
        return Encoding.ASCII.GetBytes(string.Concat(lines));
    });

    static string WriteTiktokenModel(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, TiktokenModel.Value);
        return path;
    }

    [Fact]
    public void A_tiktoken_model_encodes_like_tokenizer_json()
    {
        var model = WriteTiktokenModel(Path.Combine(_dir, "original", "tokenizer.model"));
        Assert.Equal(model, Llama3Tokenizer.TryFind(_dir));
        var fromModel = Llama3Tokenizer.Load(_dir);
        Assert.Equal(model, fromModel.Source);

        foreach (var text in TokenizerTestTexts.Fuzz(seed: 11, count: 300).Prepend(TokenizerTestTexts.Multilingual))
            Assert.Equal(fixture.Tokenizer.Encode(text, false), fromModel.Encode(text, false));
        Assert.Equal(new[] { 9906, 1917 }, fromModel.Encode("Hello world", false));
    }

    [Fact]
    public void A_tiktoken_model_names_special_tokens_as_Meta_does()
    {
        var fromModel = Llama3Tokenizer.Load(WriteTiktokenModel(Path.Combine(_dir, "tokenizer.model")));
        Assert.Equal("<|finetune_right_pad_id|>", fromModel.SpecialTokenName(128004));
        Assert.Equal("<|eom_id|>", fromModel.SpecialTokenName(128008));
        Assert.Equal("<|python_tag|>", fromModel.SpecialTokenName(128010));
        Assert.Equal("<|reserved_special_token_2|>", fromModel.SpecialTokenName(128005));
        Assert.Equal("<|reserved_special_token_3|>", fromModel.SpecialTokenName(128011));
        Assert.Equal("<|reserved_special_token_247|>", fromModel.SpecialTokenName(128255));
        Assert.Equal(new[] { 128008 }, fromModel.Encode("<|eom_id|>", allowSpecial: true));
        Assert.Equal(new[] { 128000, 128006 }, fromModel.Encode("<|begin_of_text|><|start_header_id|>", allowSpecial: true));
        var names = Enumerable.Range(128000, 256).Select(fromModel.SpecialTokenName).ToList();
        Assert.Equal(256, names.Distinct().Count());
    }

    [Fact]
    public void Saving_a_tiktoken_model_writes_Metas_format()
    {
        var expected = WriteTiktokenModel(Path.Combine(_dir, "expected.model"));
        var saved = Path.Combine(_dir, "saved", "tokenizer.model");
        fixture.Tokenizer.SaveTiktokenModel(saved);
        Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(saved));
    }

    [Fact]
    public void A_truncated_tokenizer_json_is_reported_with_its_path()
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, File.ReadAllText(fixture.TokenizerJsonPath)[..5000]);
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("invalid JSON", error.Message);
    }

    [Theory]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "has 1 entries")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "\"Unigram\"")]
    [InlineData("{\"version\": \"1.0\"}", "no 'model' object")]
    [InlineData("[1, 2]", "not a JSON object")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 200000}}}", "id 200000")]
    public void A_tokenizer_json_that_is_not_Llama_3s_is_reported_with_its_path(string json, string reason)
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, json);
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void A_tokenizer_json_with_another_split_regex_is_rejected()
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        var json = File.ReadAllText(fixture.TokenizerJsonPath);
        var llama = Llama3PreTokenizer.Pattern.Replace(@"\", @"\\");   // as written inside a JSON string
        Assert.Contains(llama, json);
        File.WriteAllText(path, json.Replace(llama, @"\\p{L}+|\\s+"));
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("pre-tokenizer", error.Message);
    }

    [Fact]
    public void A_special_token_outside_Llama_3s_range_is_rejected()
    {
        var path = Path.Combine(_dir, "tokenizer.json");
        var json = File.ReadAllText(fixture.TokenizerJsonPath);
        File.WriteAllText(path, json.Replace("\"id\": 128255", "\"id\": 128256").Replace("\"id\":128255", "\"id\":128256"));
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("128256", error.Message);
    }

    [Fact]
    public void A_malformed_tiktoken_line_is_reported_with_path_and_line()
    {
        var path = Path.Combine(_dir, "tokenizer.model");
        File.WriteAllText(path, "IQ== 0\nIg== 1\nnot-a-line\n");
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains($"{path}:3", error.Message);

        File.WriteAllText(path, "IQ== 0\nIg== 1\n");
        error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("2 ranks", error.Message);
    }

    [Fact]
    public void A_missing_tokenizer_is_reported_with_its_path()
    {
        var missing = Path.Combine(_dir, "nowhere", "tokenizer.json");
        Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => Llama3Tokenizer.Load(missing)).Message);
        Assert.Null(Llama3Tokenizer.TryFind(_dir));
        var error = Assert.Throws<FileNotFoundException>(() => Llama3Tokenizer.Load(_dir));
        Assert.Contains(_dir, error.Message);
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Fact]
    public void Tokenizer_json_is_preferred_over_the_tiktoken_file()
    {
        WriteTiktokenModel(Path.Combine(_dir, "original", "tokenizer.model"));
        File.Copy(fixture.TokenizerJsonPath, Path.Combine(_dir, "tokenizer.json"));
        Assert.Equal(Path.Combine(_dir, "tokenizer.json"), Llama3Tokenizer.TryFind(_dir));
    }

    [Fact]
    public void Copying_into_a_model_folder_brings_the_config_and_its_chat_template()
    {
        var model = Path.Combine(_dir, "model");
        var written = Llama3Tokenizer.CopyFiles(fixture.ModelsFolder, model);

        Assert.Equal(new[] { Path.Combine(model, "tokenizer.json"), Path.Combine(model, "tokenizer_config.json") }, written);
        Assert.Equal(File.ReadAllBytes(fixture.TokenizerJsonPath), File.ReadAllBytes(Path.Combine(model, "tokenizer.json")));
        Assert.Equal(File.ReadAllBytes(TokenizerDownload.TokenizerConfig), File.ReadAllBytes(Path.Combine(model, "tokenizer_config.json")));
        Assert.Equal(new[] { 9906, 1917 }, Llama3Tokenizer.Load(model).Encode("Hello world", false));
        Assert.Same(ChatTemplate.Llama3, ChatTemplate.FromModelFolder(model));   // the package ships Llama 3's template
    }

    [Fact]
    public void Copying_a_tiktoken_file_puts_it_under_original()
    {
        var source = WriteTiktokenModel(Path.Combine(_dir, "src", "tokenizer.model"));
        var model = Path.Combine(_dir, "model");
        var written = Llama3Tokenizer.CopyFiles(source, model);
        Assert.Equal(new[] { Path.Combine(model, "original", "tokenizer.model") }, written);
        Assert.Equal(Path.Combine(model, "original", "tokenizer.model"), Llama3Tokenizer.TryFind(model));
    }

    [Fact]
    public void Copying_a_broken_tokenizer_writes_nothing()
    {
        var source = Path.Combine(_dir, "src");
        Directory.CreateDirectory(source);
        File.WriteAllText(Path.Combine(source, "tokenizer.json"), "{ broken");
        File.WriteAllText(Path.Combine(source, "tokenizer_config.json"), "{}");
        var model = Path.Combine(_dir, "model");
        var error = Assert.Throws<TokenizerFormatException>(() => Llama3Tokenizer.CopyFiles(source, model));
        Assert.Contains(Path.Combine(source, "tokenizer.json"), error.Message);
        Assert.False(Directory.Exists(model));
    }
}
