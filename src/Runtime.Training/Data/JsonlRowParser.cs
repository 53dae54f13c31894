using System.Text.Json;
using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// Recognises a JSONL row as one of the accepted shapes. The first key present decides, in this order:
/// <list type="number">
/// <item><c>messages</c>: a list of <c>{"role", "content"}</c>; roles system, user, assistant; at least one assistant
/// turn; user and assistant contents must not be empty (a system content may be).</item>
/// <item><c>instruction</c> (with <c>output</c>, optional <c>input</c> and <c>system</c>): Alpaca's shape. Messages:
/// the system message when <c>system</c> is non-empty, the user message <c>instruction</c>, followed by
/// <c>"\n\n" + input</c> when <c>input</c> is non-empty (the Alpaca / TRL convention of joining the two with a blank
/// line), and the assistant message <c>output</c>. Instruction and output must not be empty.</item>
/// <item><c>input_ids</c> (optional <c>labels</c>): pre-tokenized; labels, when given, have the same length and each is
/// -100 or the input id at the same position (Hugging Face's unshifted convention: the model shifts).</item>
/// <item><c>text</c>: continued pretraining; must not be empty.</item>
/// </list>
/// Other keys are ignored (datasets often carry extra columns: Alpaca's own file has a pre-formatted <c>text</c> next
/// to <c>instruction</c>, which the order above deliberately passes over). "Empty" means empty after trimming
/// whitespace, as the chat template trims contents.
/// </summary>
public static class JsonlRowParser
{
    public const string ExpectedShapes =
        "{\"messages\": [{\"role\", \"content\"}, ...]}, {\"instruction\", \"output\"[, \"input\"][, \"system\"]}, " +
        "{\"input_ids\"[, \"labels\"]} or {\"text\"}";

    /// <summary>Parses one line (UTF-8). Throws <see cref="DataFormatException"/> naming <paramref name="file"/>:<paramref name="line"/>.</summary>
    public static DataRow Parse(ReadOnlyMemory<byte> utf8, string file, long line)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            var column = e.BytePositionInLine is { } b ? $" (byte {b + 1})" : "";
            throw new DataFormatException(file, line, SkipReason.MalformedJson, $"malformed JSON{column}: {FirstSentence(e.Message)}");
        }
        using (document)
        {
            var root = document.RootElement;
            var fail = new Failure(file, line);
            if (root.ValueKind != JsonValueKind.Object)
                throw fail.With(SkipReason.UnknownShape, $"the row is a JSON {Kind(root)}, not an object; expected {ExpectedShapes}");
            if (root.TryGetProperty("messages", out var messages)) return ParseMessages(messages, fail);
            if (root.TryGetProperty("instruction", out var instruction)) return ParseInstruction(root, instruction, fail);
            if (root.TryGetProperty("input_ids", out var ids)) return ParseTokens(root, ids, fail);
            if (root.TryGetProperty("text", out var text)) return ParseText(text, fail);
            var keys = string.Join(", ", root.EnumerateObject().Select(p => $"\"{p.Name}\""));
            throw fail.With(SkipReason.UnknownShape,
                $"the row matches none of the accepted shapes (keys: {(keys.Length == 0 ? "none" : keys)}); expected {ExpectedShapes}");
        }
    }

    readonly record struct Failure(string File, long Line)
    {
        public DataFormatException With(SkipReason reason, string problem) => new(File, Line, reason, problem);
    }

    static ChatRow ParseMessages(JsonElement messages, Failure fail)
    {
        if (messages.ValueKind != JsonValueKind.Array)
            throw fail.With(SkipReason.UnknownShape, $"\"messages\" must be a list of {{\"role\", \"content\"}} objects, not a {Kind(messages)}");
        var result = new List<ChatMessage>(messages.GetArrayLength());
        bool hasAssistant = false;
        int index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var where = $"messages[{index}]";
            if (message.ValueKind != JsonValueKind.Object)
                throw fail.With(SkipReason.UnknownShape, $"{where} must be a {{\"role\", \"content\"}} object, not a {Kind(message)}");
            if (!message.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
                throw fail.With(SkipReason.InvalidConversation, $"{where} has no \"role\" string");
            var role = roleElement.GetString()!;
            if (role is not (ChatMessage.SystemRole or ChatMessage.UserRole or ChatMessage.AssistantRole))
                throw fail.With(SkipReason.InvalidConversation,
                    $"{where} has role \"{role}\"; the roles are system, user and assistant");
            if (!message.TryGetProperty("content", out var contentElement) || contentElement.ValueKind != JsonValueKind.String)
                throw fail.With(SkipReason.UnknownShape,
                    $"{where} ({role}) needs a \"content\" string{(contentElement.ValueKind == JsonValueKind.Undefined ? "" : $", not a {Kind(contentElement)}")}");
            var content = contentElement.GetString()!;
            if (role != ChatMessage.SystemRole && IsBlank(content))
                throw fail.With(SkipReason.EmptyContent, $"{where} ({role}) has empty content");
            hasAssistant |= role == ChatMessage.AssistantRole;
            result.Add(new ChatMessage(role, content));
            index++;
        }
        if (result.Count == 0) throw fail.With(SkipReason.InvalidConversation, "\"messages\" is empty");
        if (!hasAssistant) throw fail.With(SkipReason.InvalidConversation, "the conversation has no assistant turn (nothing to learn)");
        return new ChatRow(result);
    }

    static ChatRow ParseInstruction(JsonElement row, JsonElement instructionElement, Failure fail)
    {
        var instruction = RequiredString(instructionElement, "instruction", fail);
        if (!row.TryGetProperty("output", out var outputElement))
            throw fail.With(SkipReason.UnknownShape, "an \"instruction\" row needs an \"output\" (the answer to learn)");
        var output = RequiredString(outputElement, "output", fail);
        var input = OptionalString(row, "input", fail);
        var system = OptionalString(row, "system", fail);
        if (IsBlank(instruction)) throw fail.With(SkipReason.EmptyContent, "\"instruction\" is empty");
        if (IsBlank(output)) throw fail.With(SkipReason.EmptyContent, "\"output\" is empty");

        var messages = new List<ChatMessage>(3);
        if (!IsBlank(system)) messages.Add(new ChatMessage(ChatMessage.SystemRole, system!));
        messages.Add(new ChatMessage(ChatMessage.UserRole, IsBlank(input) ? instruction : instruction + "\n\n" + input));
        messages.Add(new ChatMessage(ChatMessage.AssistantRole, output));
        return new ChatRow(messages);
    }

    static TokenRow ParseTokens(JsonElement row, JsonElement idsElement, Failure fail)
    {
        var ids = IntArray(idsElement, "input_ids", fail);
        if (ids.Length == 0) throw fail.With(SkipReason.EmptyContent, "\"input_ids\" is empty");
        int[]? labels = null;
        if (row.TryGetProperty("labels", out var labelsElement) && labelsElement.ValueKind != JsonValueKind.Null)
        {
            labels = IntArray(labelsElement, "labels", fail);
            if (labels.Length != ids.Length)
                throw fail.With(SkipReason.InvalidLabels,
                    $"\"labels\" has {labels.Length} entries but \"input_ids\" has {ids.Length}; they must match (labels are unshifted)");
            for (int i = 0; i < labels.Length; i++)
                if (labels[i] != ChatTokens.IgnoreIndex && labels[i] != ids[i])
                    throw fail.With(SkipReason.InvalidLabels,
                        $"labels[{i}] = {labels[i]} is neither -100 nor input_ids[{i}] = {ids[i]} (labels are unshifted: the model shifts them)");
        }
        return new TokenRow(ids, labels);
    }

    static TextRow ParseText(JsonElement textElement, Failure fail)
    {
        var text = RequiredString(textElement, "text", fail);
        if (IsBlank(text)) throw fail.With(SkipReason.EmptyContent, "\"text\" is empty");
        return new TextRow(text);
    }

    static int[] IntArray(JsonElement element, string key, Failure fail)
    {
        if (element.ValueKind != JsonValueKind.Array)
            throw fail.With(SkipReason.UnknownShape, $"\"{key}\" must be a list of integers, not a {Kind(element)}");
        var values = new int[element.GetArrayLength()];
        int i = 0;
        foreach (var item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out values[i]))
            {
                // An integer too large for int32 is out of any vocabulary rather than of the wrong shape.
                if (item.ValueKind == JsonValueKind.Number && item.TryGetInt64(out var big))
                    throw fail.With(key == "labels" ? SkipReason.InvalidLabels : SkipReason.TokenOutOfRange,
                        $"{key}[{i}] = {big} is out of range");
                throw fail.With(SkipReason.UnknownShape, $"{key}[{i}] is {item.GetRawText()}, not an integer");
            }
            i++;
        }
        return values;
    }

    static string RequiredString(JsonElement element, string key, Failure fail) =>
        element.ValueKind == JsonValueKind.String ? element.GetString()!
            : throw fail.With(SkipReason.UnknownShape, $"\"{key}\" must be a string, not a {Kind(element)}");

    static string? OptionalString(JsonElement row, string key, Failure fail) =>
        !row.TryGetProperty(key, out var element) || element.ValueKind == JsonValueKind.Null ? null
            : RequiredString(element, key, fail);

    /// <summary>Blank as the chat template's trim (Python's str.strip) sees it: Unicode whitespace and U+001C..U+001F.</summary>
    static bool IsBlank(string? text)
    {
        if (text is null) return true;
        foreach (var c in text)
            if (!(char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F')) return false;
        return true;
    }

    static string Kind(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "list",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => element.ValueKind.ToString(),
    };

    static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (cut > 0 ? message[..cut] : message).TrimEnd();
    }
}
