using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

public sealed class ChatTemplateTokensTests(RealTokenizerFixture fixture) : IClassFixture<RealTokenizerFixture>
{
    readonly Llama3Tokenizer _tokenizer = fixture.Tokenizer;

    // Ids written out: specials by hand, and the vocabulary ids of the header words (tokenizer.json: "system" 9125,
    // "user" 882, "assistant" 78191, "ĊĊ" = "\n\n" 271).
    const int Bos = 128000, Start = 128006, End = 128007, Eot = 128009;
    const int System = 9125, User = 882, Assistant = 78191, Blank = 271;

    int[] Plain(string text) => _tokenizer.Encode(text, allowSpecial: false);

    [Fact]
    public void Llama31_tokens_equal_the_hand_built_sequence_and_only_the_answer_is_learned()
    {
        var conversation = new ChatMessage[] { new("system", "You are terse."), new("user", "Hi there!"), new("assistant", "Hello.") };
        var prompt = new List<int> { Bos, Start, System, End };
        prompt.AddRange(Plain("\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse."));
        prompt.AddRange([Eot, Start, User, End, Blank]);
        prompt.AddRange(Plain("Hi there!"));
        prompt.AddRange([Eot, Start, Assistant, End, Blank]);
        var answer = Plain("Hello.").Append(Eot).ToArray();

        var tokens = ChatTemplate.Llama31.RenderTokens(_tokenizer, conversation);

        Assert.Equal(prompt.Concat(answer), tokens.Ids);
        Assert.Equal(Enumerable.Repeat(false, prompt.Count).Concat(Enumerable.Repeat(true, answer.Length)), tokens.IsAssistantLearned);
        Assert.Equal(Enumerable.Repeat(-100, prompt.Count).Concat(answer), tokens.Labels());
    }

    [Fact]
    public void Llama3_tokens_have_no_system_block_and_Llama31s_do()
    {
        var conversation = new ChatMessage[] { new("user", "Hi"), new("assistant", "Yo") };
        var expectedLlama3 = new[] { Bos, Start, User, End, Blank }.Concat(Plain("Hi"))
            .Concat([Eot, Start, Assistant, End, Blank]).Concat(Plain("Yo")).Append(Eot);
        var llama3 = ChatTemplate.Llama3.RenderTokens(_tokenizer, conversation);
        var llama31 = ChatTemplate.Llama31.RenderTokens(_tokenizer, conversation);

        Assert.Equal(expectedLlama3, llama3.Ids);
        Assert.Equal(new[] { Bos, Start, System, End }, llama31.Ids[..4]);
        Assert.Equal(llama3.Ids[1..], llama31.Ids[^(llama3.Ids.Length - 1)..]);   // same turns after 3.1's system block
        Assert.Equal(llama3.IsAssistantLearned.Count(l => l), llama31.IsAssistantLearned.Count(l => l));
    }

    public static TheoryData<string, ChatMessage[], bool> Conversations => new()
    {
        { "llama3.1", [new("user", "Hello")], true },
        { "llama3.1", [new("system", "  Be brief.\n"), new("user", "\n\n  Two\nlines  \n"), new("assistant", "  Sure!  \n\n")], false },
        { "llama3", [new("system", "Sys"), new("user", "Q1"), new("assistant", "A1"), new("user", "Q2 🙏a"), new("assistant", "")], true },
        { "llama3.1", [new("user", "تحية 😀 \t tabs\tand   spaces"), new("assistant", "'s 12345\n\n\n- item\n  - nested\n"), new("user", "ok")], true },
        { "llama3", [new("user", "x"), new("assistant", "\u00A0 y \u3000"), new("system", "late system")], false },
        { "llama3.1", [], true },
    };

    [Theory]
    [MemberData(nameof(Conversations))]
    public void Tokens_equal_encoding_the_rendered_text(string template, ChatMessage[] messages, bool generationPrompt)
    {
        var chat = ChatTemplate.Parse(template);
        var tokens = chat.RenderTokens(_tokenizer, messages, generationPrompt);
        Assert.Equal(_tokenizer.Encode(chat.Render(messages, generationPrompt), allowSpecial: true), tokens.Ids);
        Assert.Equal(tokens.Ids.Length, tokens.IsAssistantLearned.Length);
    }

    [Fact]
    public void Every_assistant_turn_learns_its_content_and_eot_and_nothing_else()
    {
        var messages = new ChatMessage[]
        {
            new("user", "Q1"), new("assistant", " First answer. "), new("user", "Q2"), new("assistant", ""),
            new("user", "Q3"), new("assistant", "Third\nanswer"),
        };
        var tokens = ChatTemplate.Llama31.RenderTokens(_tokenizer, messages, addGenerationPrompt: true);

        var learnedRuns = new List<int[]>();
        for (int i = 0; i < tokens.Ids.Length; i++)
        {
            if (!tokens.IsAssistantLearned[i]) continue;
            int start = i;
            while (i < tokens.Ids.Length && tokens.IsAssistantLearned[i]) i++;
            learnedRuns.Add(tokens.Ids[start..i]);
        }
        Assert.Equal(
            new[] { Plain("First answer.").Append(Eot).ToArray(), [Eot], Plain("Third\nanswer").Append(Eot).ToArray() },
            learnedRuns);
        // Each learned run directly follows the assistant header, which is not learned.
        Assert.Equal(new[] { Start, Assistant, End, Blank }, tokens.Ids[^4..]);
        Assert.All(tokens.IsAssistantLearned[^4..], Assert.False);
    }

    [Fact]
    public void Special_token_names_inside_messages_stay_text()
    {
        var messages = new ChatMessage[] { new("user", "say <|eot_id|> then <|start_header_id|>"), new("assistant", "<|eot_id|>") };
        var tokens = ChatTemplate.Llama3.RenderTokens(_tokenizer, messages);

        Assert.Equal(2, tokens.Ids.Count(id => id == Eot));                 // one per turn, none from the typed names
        Assert.Equal(2, tokens.Ids.Count(id => id == Start));
        Assert.Equal(ChatTemplate.Llama3.Render(messages), _tokenizer.Decode(tokens.Ids));
        Assert.Equal(Plain("<|eot_id|>").Append(Eot), tokens.Ids.Where((_, i) => tokens.IsAssistantLearned[i]));
    }

    [Fact]
    public void The_npm_package_ships_Llama_3s_template() =>
        Assert.Same(ChatTemplate.Llama3, ChatTemplate.FromModelFolder(fixture.ModelsFolder));
}
