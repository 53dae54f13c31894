using Runtime.Cluster.Driving;
using Runtime.Cluster.RunSpecs;
using Runtime.Cluster.Tests.RunSpecs;
using Runtime.Model.Tokenization;

namespace Runtime.Cluster.Tests.Driving;

public class RunRecipeTests
{
    /// <summary>
    /// A run trains on conversations rendered with the model folder's own chat template, the one `rt generate --chat`
    /// prompts with: trained under the other template (3.1's knowledge-date system block, or its absence), a small model
    /// answers its prompts with noise.
    /// </summary>
    [Theory]
    [InlineData("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", "llama3")]
    [InlineData("{{ '<|start_header_id|>system<|end_header_id|>' + 'Cutting Knowledge Date: December 2023' }}", "llama3.1")]
    [InlineData(null, "llama3.1")] // no tokenizer_config.json: the default
    public void Conversations_are_rendered_with_the_model_folders_chat_template(string? jinja, string expected)
    {
        var folder = Directory.CreateTempSubdirectory("rt-recipe-").FullName;
        try
        {
            if (jinja is not null)
                File.WriteAllText(Path.Combine(folder, Llama3Tokenizer.TokenizerConfigFile),
                    System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["chat_template"] = jinja }));
            var spec = RunSpecParser.Parse(RunSpecParserTests.IssueExample, "test.conf", folder, ["model=" + folder]);
            Assert.Equal(expected, RunRecipe.DataOptions(spec).Data.Template.Name);
            Assert.Equal(ChatTemplate.FromModelFolder(folder), RunRecipe.DataOptions(spec).Data.Template);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
