namespace Runtime.Model.Tokenization;

/// <summary>A tokenizer file that cannot be a Llama 3 tokenizer; the message names the file (and the line or key).</summary>
public sealed class TokenizerFormatException(string message, Exception? inner = null) : Exception(message, inner);
