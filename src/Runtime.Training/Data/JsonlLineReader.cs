using System.Security.Cryptography;

namespace Runtime.Training.Data;

/// <summary>
/// Reads a JSONL file as UTF-8 lines (without the line break; "\r\n" and "\n" both end a line, a UTF-8 BOM at the start
/// is dropped), numbering them from 1 and skipping blank ones, while hashing every byte read: the hash at the end is
/// the SHA-256 of exactly the content the lines came from, even if the file changes while it is read.
/// </summary>
public sealed class JsonlLineReader : IDisposable
{
    readonly Stream _stream;
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    byte[] _buffer = new byte[1 << 20];
    int _start, _end;
    bool _eof;
    long _lineNumber;

    public JsonlLineReader(string path)
    {
        Path = path;
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
    }

    public string Path { get; }

    /// <summary>Bytes read so far (the whole file once <see cref="TryReadLine"/> returned false).</summary>
    public long BytesRead { get; private set; }

    /// <summary>The next non-blank line, as a copy its caller owns.</summary>
    public bool TryReadLine(out long lineNumber, out byte[] line)
    {
        while (true)
        {
            int newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
            if (newline >= 0) newline += _start;
            if (newline < 0 && !_eof)
            {
                Fill();
                continue;
            }
            if (newline < 0 && _start == _end)
            {
                lineNumber = 0;
                line = [];
                return false;
            }
            int stop = newline < 0 ? _end : newline;
            int contentEnd = stop > _start && _buffer[stop - 1] == (byte)'\r' ? stop - 1 : stop;
            int contentStart = _start;
            if (_lineNumber == 0 && contentEnd - contentStart >= 3
                && _buffer[contentStart] == 0xEF && _buffer[contentStart + 1] == 0xBB && _buffer[contentStart + 2] == 0xBF)
                contentStart += 3;
            _lineNumber++;
            _start = newline < 0 ? _end : newline + 1;
            if (IsBlank(_buffer.AsSpan(contentStart, contentEnd - contentStart))) continue;
            lineNumber = _lineNumber;
            line = _buffer.AsSpan(contentStart, contentEnd - contentStart).ToArray();
            return true;
        }
    }

    /// <summary>The SHA-256 of all bytes read; call after the last line.</summary>
    public byte[] Sha256() => _hash.GetCurrentHash();

    void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buffer.Length) Array.Resize(ref _buffer, _buffer.Length * 2); // a line longer than the buffer
        int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0)
        {
            _eof = true;
            return;
        }
        _hash.AppendData(_buffer, _end, read);
        BytesRead += read;
        _end += read;
    }

    static bool IsBlank(ReadOnlySpan<byte> line)
    {
        foreach (var b in line)
            if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r')) return false;
        return true;
    }

    public void Dispose()
    {
        _stream.Dispose();
        _hash.Dispose();
    }

    /// <summary>The SHA-256 of a whole file, streamed.</summary>
    public static byte[] HashFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20, FileOptions.SequentialScan);
        return SHA256.HashData(stream);
    }
}
