using System.Security.Cryptography;

namespace Runtime.Training.Checkpoints;

/// <summary>A file of a checkpoint folder as its manifest records it: name within the folder, SHA-256 (lower-case hex), size.</summary>
public sealed record CheckpointFile(string Name, string Sha256, long Bytes)
{
    /// <summary>Describes a file on disk by reading it once.</summary>
    public static CheckpointFile Of(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20);
        var hash = Convert.ToHexStringLower(SHA256.HashData(stream));
        return new CheckpointFile(System.IO.Path.GetFileName(path), hash, stream.Length);
    }
}
