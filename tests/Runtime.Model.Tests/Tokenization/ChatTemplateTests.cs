using Runtime.Model.Tokenization;

namespace Runtime.Model.Tests.Tokenization;

public sealed class ChatTemplateTests
{
    static readonly ChatMessage[] Conversation =
    [
        new("system", "You are terse."),
        new("user", "Hi there!"),
        new("assistant", "Hello."),
    ];

    [Fact]
    public void Llama31_renders_the_dated_system_block_then_each_turn() =>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>",
            ChatTemplate.Llama31.Render(Conversation));

    [Fact]
    public void Llama31_keeps_an_empty_system_block_and_adds_the_generation_prompt() =>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.Llama31.Render([new("user", "What is 2+2?")], addGenerationPrompt: true));

    [Fact]
    public void Llama3_renders_each_message_as_it_comes() =>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>",
            ChatTemplate.Llama3.Render(Conversation));

    [Fact]
    public void Llama3_has_no_system_block_without_a_system_message() =>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.Llama3.Render([new("user", "What is 2+2?")], addGenerationPrompt: true));

    [Fact]
    public void Default_is_Llama31() => Assert.Same(ChatTemplate.Llama31, ChatTemplate.Default);

    [Fact]
    public void Contents_are_stripped_as_Python_strips_them() =>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nline one\n\n  line two<|eot_id|>",
            ChatTemplate.Llama3.Render([new("user", " \u001C\t\n line one\n\n  line two \u2003\r\n\u001F")]));

    [Fact]
    public void A_later_system_message_is_an_ordinary_turn_in_Llama31()
    {
        var text = ChatTemplate.Llama31.Render([new("user", "a"), new("system", "b")]);
        Assert.EndsWith(
            "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\na<|eot_id|>" +
            "<|start_header_id|>system<|end_header_id|>\n\nb<|eot_id|>", text);
    }

    [Fact]
    public void Other_roles_are_rejected_naming_the_message()
    {
        var error = Assert.Throws<ArgumentException>(() => ChatTemplate.Llama31.Render([new("user", "a"), new("tool", "{}")]));
        Assert.Contains("message 1", error.Message);
        Assert.Contains("\"tool\"", error.Message);
        Assert.Throws<ArgumentException>(() => ChatTemplate.Llama3.Render([new("User", "a")]));
        Assert.Throws<ArgumentException>(() => ChatTemplate.Llama3.Render([new("user", null!)]));
    }

    [Theory]
    [InlineData("llama3.1", ChatTemplateKind.Llama31)]
    [InlineData("Llama-3.1", ChatTemplateKind.Llama31)]
    [InlineData("llama3", ChatTemplateKind.Llama3)]
    public void Templates_parse_by_name(string name, ChatTemplateKind kind) => Assert.Equal(kind, ChatTemplate.Parse(name).Kind);

    [Fact]
    public void Unknown_template_names_are_rejected() =>
        Assert.Contains("chatml", Assert.Throws<ArgumentException>(() => ChatTemplate.Parse("chatml")).Message);

    [Fact]
    public void Jinja_templates_are_recognised()
    {
        Assert.Same(ChatTemplate.Llama31, ChatTemplate.Detect(
            "{{- bos_token }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}"));
        Assert.Same(ChatTemplate.Llama3, ChatTemplate.Detect(
            "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}{% endfor %}"));
        Assert.Null(ChatTemplate.Detect("{% for message in messages %}{{'<|im_start|>' + message['role']}}{% endfor %}"));
    }

    [Fact]
    public void A_model_folder_names_its_template_in_tokenizer_config()
    {
        var dir = Directory.CreateTempSubdirectory("runtime-chat-template-").FullName;
        try
        {
            Assert.Same(ChatTemplate.Default, ChatTemplate.FromModelFolder(dir));
            var config = Path.Combine(dir, "tokenizer_config.json");
            File.WriteAllText(config, "{\"chat_template\": \"<|start_header_id|>{{ role }}<|end_header_id|>\"}");
            Assert.Same(ChatTemplate.Llama3, ChatTemplate.FromModelFolder(dir));
            File.WriteAllText(config, "{\"chat_template\": [{\"name\": \"default\", \"template\": \"<|start_header_id|>Cutting Knowledge Date\"}]}");
            Assert.Same(ChatTemplate.Llama31, ChatTemplate.FromModelFolder(dir));
            File.WriteAllText(config, "{\"chat_template\": \"<|im_start|>{{ role }}\"}");
            Assert.Contains(config, Assert.Throws<TokenizerFormatException>(() => ChatTemplate.FromModelFolder(dir)).Message);
            File.WriteAllText(config, "{\"chat_template\": ");
            Assert.Contains(config, Assert.Throws<TokenizerFormatException>(() => ChatTemplate.FromModelFolder(dir)).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
