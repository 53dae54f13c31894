using Runtime.Model.Tests.Tokenization;
using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Parity;

/// <summary>Runtime's tokenizer against the ids Hugging Face's Rust `tokenizers` produced for the same tokenizer.json.</summary>
public sealed class HfTokenizerParityTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>
{
    static readonly System.Text.Json.Nodes.JsonObject Expected = HfFixtures.Expected["tokenizer"]!.AsObject();

    public static TheoryData<int> EncodingCases()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < Expected["encodings"]!.AsArray().Count; i++) data.Add(i);
        return data;
    }

    [Theory]
    [MemberData(nameof(EncodingCases))]
    public void Text_encodes_to_the_ids_tokenizers_gives(int index)
    {
        // tokenizers' encode() always splits out added tokens such as <|eot_id|>, i.e. Runtime's allowSpecial mode.
        var row = Expected["encodings"]![index]!;
        var text = row["text"]!.GetValue<string>();
        Assert.Equal(HfFixtures.Ints(row["ids"]!), fixture.Tokenizer.Encode(text, allowSpecial: true));
    }

    [Fact]
    public void Every_special_token_has_the_name_tokenizers_gives_its_id()
    {
        foreach (var (id, name) in Expected["special_tokens"]!.AsObject())
        {
            var expected = name!.GetValue<string>();
            Assert.Equal(expected, fixture.Tokenizer.Decode([int.Parse(id)]));
            Assert.Equal([int.Parse(id)], fixture.Tokenizer.Encode(expected, allowSpecial: true));
        }
    }

    [Fact]
    public void Llama3_chat_template_matches_the_jinja_rendering_string_and_tokens()
    {
        var chat = Expected["chat"]!;
        var messages = chat["messages"]!.AsArray()
            .Select(m => new ChatMessage(m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>()))
            .ToArray();
        Assert.Equal(chat["llama3_rendered"]!.GetValue<string>(), ChatTemplate.Llama3.Render(messages, addGenerationPrompt: true));
        var tokens = ChatTemplate.Llama3.RenderTokens(fixture.Tokenizer, messages, addGenerationPrompt: true);
        Assert.Equal(HfFixtures.Ints(chat["llama3_ids"]!), tokens.Ids);
    }
}
