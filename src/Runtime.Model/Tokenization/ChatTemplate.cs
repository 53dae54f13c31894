using System.Text;
using System.Text.Json;

namespace Runtime.Model.Tokenization;

public enum ChatTemplateKind
{
    /// <summary>Llama 3.1's template: always a system block with the knowledge-cutoff and date header.</summary>
    Llama31,
    /// <summary>Llama 3's template: each message as it comes, BOS before the first.</summary>
    Llama3,
}

/// <summary>
/// The Llama 3 and Llama 3.1 chat templates, rendered the way their Jinja templates (in the models'
/// tokenizer_config.json) render a conversation without tools; contents are stripped of surrounding whitespace as
/// Jinja's <c>trim</c> (Python's <c>str.strip</c>) does.
/// <para>Llama 3.1:
/// <c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;system&lt;|end_header_id|&gt;\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}&lt;|eot_id|&gt;</c>
/// then <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;</c> per message. Only a system
/// message in first place goes into the system block (a later one is rendered like any message); with none the block is
/// still there, empty.</para>
/// <para>Llama 3: <c>&lt;|begin_of_text|&gt;</c> then the same per-message blocks for every message, system included.</para>
/// The generation prompt is <c>&lt;|start_header_id|&gt;assistant&lt;|end_header_id|&gt;\n\n</c>.
/// </summary>
public sealed class ChatTemplate
{
    const string KnowledgeHeader = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

    public static ChatTemplate Llama31 { get; } = new(ChatTemplateKind.Llama31, "llama3.1");
    public static ChatTemplate Llama3 { get; } = new(ChatTemplateKind.Llama3, "llama3");
    public static ChatTemplate Default => Llama31;

    ChatTemplate(ChatTemplateKind kind, string name)
    {
        Kind = kind;
        Name = name;
    }

    public ChatTemplateKind Kind { get; }

    /// <summary>"llama3.1" or "llama3", as <see cref="Parse"/> accepts them.</summary>
    public string Name { get; }

    public override string ToString() => Name;

    public static ChatTemplate Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "llama3.1" or "llama-3.1" or "llama31" => Llama31,
        "llama3" or "llama-3" => Llama3,
        _ => throw new ArgumentException($"unknown chat template \"{name}\" (known: llama3.1, llama3)", nameof(name)),
    };

    /// <summary>
    /// Recognises a Jinja chat template: one with Llama 3.1's knowledge-date header (3.2 and 3.3 have it too; they are
    /// rendered with 3.1's fixed date) is 3.1's; one with Llama 3's header tokens but no date is 3's. Null otherwise.
    /// </summary>
    public static ChatTemplate? Detect(string jinja) =>
        !jinja.Contains("<|start_header_id|>", StringComparison.Ordinal) ? null
        : jinja.Contains("Cutting Knowledge Date", StringComparison.Ordinal) ? Llama31
        : Llama3;

    /// <summary>
    /// The template a model folder's tokenizer_config.json names; the default (3.1) when the file or its
    /// <c>chat_template</c> is absent. A template that is neither Llama 3's nor 3.1's is an error naming the file.
    /// </summary>
    public static ChatTemplate FromModelFolder(string modelFolder)
    {
        var path = Path.Combine(modelFolder, Llama3Tokenizer.TokenizerConfigFile);
        if (!File.Exists(path)) return Default;
        string? jinja;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("chat_template", out var template)) return Default;
            jinja = template.ValueKind switch
            {
                JsonValueKind.String => template.GetString(),
                // Newer files may list named templates: [{"name": "default", "template": "..."}, ...].
                JsonValueKind.Array => template.EnumerateArray()
                    .Where(t => t.ValueKind == JsonValueKind.Object && t.TryGetProperty("name", out var n) && n.GetString() == "default")
                    .Select(t => t.TryGetProperty("template", out var s) ? s.GetString() : null)
                    .FirstOrDefault(),
                JsonValueKind.Null => null,
                _ => throw new TokenizerFormatException($"{path}: 'chat_template' is neither a string nor a list"),
            };
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
        if (jinja is null) return Default;
        return Detect(jinja) ?? throw new TokenizerFormatException(
            $"{path}: 'chat_template' is neither Llama 3.1's nor Llama 3's; choose one explicitly (llama3.1, llama3)");
    }

    /// <summary>The conversation as text, BOS included (tokenize it with special tokens allowed, without adding BOS).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        var text = new StringBuilder();
        foreach (var segment in Segments(messages, addGenerationPrompt))
            text.Append(segment.IsSpecial ? Llama3SpecialTokens.DefaultName(segment.SpecialId) : segment.Text);
        return text.ToString();
    }

    /// <summary>
    /// The conversation as token ids, with the tokens training learns marked. Learned: each assistant message's content
    /// tokens and its closing &lt;|eot_id|&gt;, so the model learns to answer and to stop. Not learned: everything else,
    /// including the assistant header <c>&lt;|start_header_id|&gt;assistant&lt;|end_header_id|&gt;\n\n</c> (TRL's
    /// convention: its assistant-only loss masks the header, which the prompt always supplies at inference; torchtune
    /// would learn it) and the generation prompt.
    /// <para>The ids equal <see cref="Llama3Tokenizer.Encode(string, bool)"/> of <see cref="Render"/>'s text with special
    /// tokens allowed, with one deliberate difference: message contents are encoded as plain text, so a special token's
    /// name typed inside a message stays text instead of becoming the token (Hugging Face's apply_chat_template would
    /// let it end the turn).</para>
    /// </summary>
    public ChatTokens RenderTokens(Llama3Tokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        var ids = new List<int>();
        var learned = new List<bool>();
        foreach (var segment in Segments(messages, addGenerationPrompt))
        {
            int before = ids.Count;
            if (segment.IsSpecial) ids.Add(segment.SpecialId);
            else tokenizer.Encode(segment.Text, allowSpecial: false, ids);
            for (int i = before; i < ids.Count; i++) learned.Add(segment.Learned);
        }
        return new ChatTokens(ids.ToArray(), learned.ToArray());
    }

    /// <summary>A special token or a run of text; the boundaries between them are also boundaries of the BPE's pieces
    /// (the header's "\n\n" is a piece of its own before stripped content), so encoding segment by segment equals
    /// encoding the whole text.</summary>
    readonly record struct Segment(string Text, int SpecialId, bool Learned)
    {
        public bool IsSpecial => SpecialId >= 0;
        public static Segment Special(int id, bool learned = false) => new("", id, learned);
        public static Segment Plain(string text, bool learned = false) => new(text, -1, learned);
    }

    IEnumerable<Segment> Segments(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        for (int i = 0; i < messages.Count; i++) CheckMessage(messages[i], i);

        int first = 0;
        if (Kind == ChatTemplateKind.Llama31)
        {
            yield return Segment.Special(Llama3SpecialTokens.BeginOfText);
            string system = "";
            if (messages.Count > 0 && messages[0].Role == ChatMessage.SystemRole)
            {
                system = JinjaTrim(messages[0].Content);
                first = 1;
            }
            foreach (var s in Header(ChatMessage.SystemRole)) yield return s;
            yield return Segment.Plain("\n\n" + KnowledgeHeader + system);
            yield return Segment.Special(Llama3SpecialTokens.EotId);
        }

        for (int i = first; i < messages.Count; i++)
        {
            var message = messages[i];
            bool learned = message.Role == ChatMessage.AssistantRole;
            if (Kind == ChatTemplateKind.Llama3 && i == 0) yield return Segment.Special(Llama3SpecialTokens.BeginOfText);
            foreach (var s in Header(message.Role)) yield return s;
            yield return Segment.Plain("\n\n");
            var content = JinjaTrim(message.Content);
            if (content.Length > 0) yield return Segment.Plain(content, learned);
            yield return Segment.Special(Llama3SpecialTokens.EotId, learned);
        }

        if (addGenerationPrompt)
        {
            foreach (var s in Header(ChatMessage.AssistantRole)) yield return s;
            yield return Segment.Plain("\n\n");
        }
    }

    static IEnumerable<Segment> Header(string role)
    {
        yield return Segment.Special(Llama3SpecialTokens.StartHeader);
        yield return Segment.Plain(role);
        yield return Segment.Special(Llama3SpecialTokens.EndHeader);
    }

    static void CheckMessage(ChatMessage? message, int index)
    {
        if (message is null) throw new ArgumentException($"message {index} is null");
        if (message.Role is not (ChatMessage.SystemRole or ChatMessage.UserRole or ChatMessage.AssistantRole))
            throw new ArgumentException(
                $"message {index} has role \"{message.Role}\"; the Llama 3 chat templates here take system, user and assistant");
        if (message.Content is null) throw new ArgumentException($"message {index} ({message.Role}) has no content");
    }

    /// <summary>Jinja's trim is Python's str.strip(): Unicode whitespace plus the separators U+001C..U+001F,
    /// which .NET's char.IsWhiteSpace does not count.</summary>
    internal static string JinjaTrim(string text)
    {
        static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';
        int start = 0, end = text.Length;
        while (start < end && IsPythonSpace(text[start])) start++;
        while (end > start && IsPythonSpace(text[end - 1])) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }
}
