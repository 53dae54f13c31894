namespace Runtime.Model.Tokenization;

/// <summary>
/// The 256 special token ids of the Llama 3 family (128000..128255). Ids are fixed across Llama 3, 3.1, 3.2 and 3.3;
/// the names of the reserved ones differ between sources, so code matches on ids and takes names from the file.
/// </summary>
public static class Llama3SpecialTokens
{
    public const int First = 128000;
    public const int Count = 256;

    public const int BeginOfText = 128000;
    public const int EndOfText = 128001;
    public const int FinetuneRightPad = 128004;
    public const int StartHeader = 128006;
    public const int EndHeader = 128007;
    public const int EomId = 128008;
    public const int EotId = 128009;
    public const int PythonTag = 128010;

    /// <summary>
    /// Meta's names, used when the tokenizer file carries none (tiktoken's tokenizer.model) or lacks an id. The reserved
    /// numbering follows Llama 3.1's tokenizer.json: 128002, 128003 are reserved 0 and 1, 128005 is reserved 2, and
    /// 128011 + k is reserved 3 + k.
    /// </summary>
    public static string DefaultName(int id) => id switch
    {
        BeginOfText => "<|begin_of_text|>",
        EndOfText => "<|end_of_text|>",
        FinetuneRightPad => "<|finetune_right_pad_id|>",
        StartHeader => "<|start_header_id|>",
        EndHeader => "<|end_header_id|>",
        EomId => "<|eom_id|>",
        EotId => "<|eot_id|>",
        PythonTag => "<|python_tag|>",
        128002 or 128003 => $"<|reserved_special_token_{id - 128002}|>",
        128005 => "<|reserved_special_token_2|>",
        >= 128011 and < First + Count => $"<|reserved_special_token_{id - 128011 + 3}|>",
        _ => throw new ArgumentOutOfRangeException(nameof(id), id, $"not a Llama 3 special token id ({First}..{First + Count - 1})"),
    };
}
