namespace Runtime.Model.Tokenization;

/// <summary>One turn of a conversation. Roles are "system", "user" and "assistant" (tool turns are not supported).</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public const string SystemRole = "system";
    public const string UserRole = "user";
    public const string AssistantRole = "assistant";
}
