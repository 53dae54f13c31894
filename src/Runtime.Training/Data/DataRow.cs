using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>One JSONL row, recognised as one of the accepted shapes (see <see cref="JsonlRowParser"/>).</summary>
public abstract record DataRow;

/// <summary>
/// A conversation: <c>{"messages": [...]}</c> as it is, or <c>{"instruction", "output"[, "input"][, "system"]}</c>
/// turned into messages. Rendered through the chat template; only the assistant's turns are learned.
/// </summary>
public sealed record ChatRow(IReadOnlyList<ChatMessage> Messages) : DataRow;

/// <summary>Continued pretraining, <c>{"text"}</c>: BOS + the text's tokens + &lt;|end_of_text|&gt;, all learned.</summary>
public sealed record TextRow(string Text) : DataRow;

/// <summary>
/// Pre-tokenized, <c>{"input_ids", "labels"?}</c>: used as given (no BOS added). <see cref="Labels"/> are Hugging
/// Face's unshifted labels (-100 or the id at the same position); null means every token is learned.
/// </summary>
public sealed record TokenRow(int[] InputIds, int[]? Labels) : DataRow;
