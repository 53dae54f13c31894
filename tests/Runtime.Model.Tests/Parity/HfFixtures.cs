using System.Text.Json.Nodes;
using Runtime.Model.Tests.Tokenization;

namespace Runtime.Model.Tests.Parity;

/// <summary>
/// The reference values Hugging Face transformers, PEFT and tokenizers computed (Fixtures/hf-parity/README.md says how).
/// </summary>
public static class HfFixtures
{
    public static string Folder { get; } =
        Path.Combine(TokenizerDownload.RepositoryRoot(), "tests", "Runtime.Model.Tests", "Fixtures", "hf-parity");

    static readonly Lazy<JsonObject> ExpectedJson =
        new(() => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "expected.json")))!);

    public static JsonObject Expected => ExpectedJson.Value;

    public static string Path_(string name) => Path.Combine(Folder, name);

    public static long[][] LongRows(JsonNode node) =>
        node.AsArray().Select(r => r!.AsArray().Select(v => v!.GetValue<long>()).ToArray()).ToArray();

    public static int[] Ints(JsonNode node) => node.AsArray().Select(v => v!.GetValue<int>()).ToArray();
}
