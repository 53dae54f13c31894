using Runtime.Model.Tokenization;

namespace Runtime.Training.Data;

/// <summary>
/// Turns a parsed row into tokens and targets: conversations through the chat template (the assistant's content and its
/// &lt;|eot_id|&gt; learned, see <see cref="ChatTemplate.RenderTokens"/>), text as BOS + tokens + &lt;|end_of_text|&gt;
/// all learned, pre-tokenized rows as given after checking their ids against the vocabulary. Then keeps the head
/// (max-seq-length tokens) and clears the first token's target (see <see cref="EncodedSample"/>).
/// Thread-safe: the tokenizer is, and nothing here is mutable.
/// </summary>
public sealed class SampleEncoder
{
    readonly Llama3Tokenizer _tokenizer;
    readonly ChatTemplate _template;
    readonly int _maxSeqLength;

    public SampleEncoder(Llama3Tokenizer tokenizer, ChatTemplate template, int maxSeqLength)
    {
        _tokenizer = tokenizer;
        _template = template;
        _maxSeqLength = maxSeqLength;
    }

    public SampleEncoder(Llama3Tokenizer tokenizer, DataOptions options) : this(tokenizer, options.Template, options.MaxSeqLength)
    {
    }

    /// <summary>Throws <see cref="DataFormatException"/> (naming file:line) for ids outside the vocabulary.</summary>
    public EncodedSample Encode(DataRow row, string file, long line)
    {
        int[] ids;
        bool[] targets;
        switch (row)
        {
            case ChatRow chat:
                var tokens = _template.RenderTokens(_tokenizer, chat.Messages);
                ids = tokens.Ids;
                targets = tokens.IsAssistantLearned;
                break;
            case TextRow text:
                var list = new List<int>(text.Text.Length / 3 + 2) { _tokenizer.BeginOfText };
                _tokenizer.Encode(text.Text.AsSpan(), allowSpecial: false, list);
                list.Add(_tokenizer.EndOfText);
                ids = list.ToArray();
                targets = new bool[ids.Length];
                Array.Fill(targets, true);
                break;
            case TokenRow pre:
                ids = pre.InputIds;
                for (int i = 0; i < ids.Length; i++)
                    if ((uint)ids[i] >= (uint)_tokenizer.VocabSize)
                        throw new DataFormatException(file, line, SkipReason.TokenOutOfRange,
                            $"input_ids[{i}] = {ids[i]} is outside the vocabulary (valid ids: 0..{_tokenizer.VocabSize - 1})");
                targets = new bool[ids.Length];
                for (int i = 0; i < ids.Length; i++) targets[i] = pre.Labels is null || pre.Labels[i] != ChatTokens.IgnoreIndex;
                break;
            default:
                throw new ArgumentException($"unknown row type {row.GetType().Name}", nameof(row));
        }

        bool truncated = ids.Length > _maxSeqLength;
        if (truncated)
        {
            ids = ids[.._maxSeqLength];
            targets = targets[.._maxSeqLength];
        }
        else if (ReferenceEquals(ids, (row as TokenRow)?.InputIds))
        {
            ids = (int[])ids.Clone(); // the sample owns its ids; the row stays as parsed
        }
        targets[0] = false;
        int count = 0;
        foreach (var t in targets) count += t ? 1 : 0;
        return new EncodedSample(ids, targets, count, truncated);
    }
}
