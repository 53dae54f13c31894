using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

/// <summary>
/// The real Llama 3 tokenizer (see <see cref="TokenizerDownload"/>), loaded once per test process and shared by every
/// class that uses this fixture. If it cannot be fetched, the tests using it fail with instructions.
/// </summary>
public sealed class RealTokenizerFixture
{
    static readonly Lazy<Llama3Tokenizer> Shared =
        new(() => Llama3Tokenizer.Load(TokenizerDownload.TokenizerJson), LazyThreadSafetyMode.ExecutionAndPublication);

    public RealTokenizerFixture() => _ = Shared.Value;

    public Llama3Tokenizer Tokenizer => Shared.Value;

    /// <summary>The folder with the package's tokenizer.json and tokenizer_config.json.</summary>
    public string ModelsFolder => TokenizerDownload.ModelsFolder;

    public string TokenizerJsonPath => TokenizerDownload.TokenizerJson;
}
