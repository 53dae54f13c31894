namespace Runtime.Cluster.Configuration;

/// <summary>A HOCON file or setting that cannot be read; the message names the file (and line) or the key.</summary>
public sealed class HoconException(string message, Exception? inner = null) : Exception(message, inner);
