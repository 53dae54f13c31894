namespace Runtime.Model.Config;

/// <summary>A config.json that cannot describe a Llama model; the message names the file and the key.</summary>
public sealed class ModelConfigException(string message) : Exception(message);
