using System.IO.MemoryMappedFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.IO;

/// <summary>
/// One .safetensors file, read tensor by tensor. Opening reads and validates only the header; each
/// <see cref="Load"/> maps just the bytes it needs (the whole tensor, or the span covering a slice) read-only and
/// copies them straight into a new tensor's storage, so reading a model never holds more than the requested tensor
/// in memory. Loads may run concurrently; disposing while a load runs is not supported.
/// </summary>
public sealed class SafeTensorsFile : ITensorSource
{
    readonly FileStream _stream;
    readonly MemoryMappedFile _map;
    readonly SafeTensorsHeader _header;

    public SafeTensorsFile(string path)
    {
        Location = Path.GetFullPath(path);
        try
        {
            // FileShare.Delete: a writer may atomically replace this file while we read the old one.
            _stream = new FileStream(Location, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete,
                bufferSize: 1, FileOptions.None); // no RandomAccess hint: it would turn off readahead for the mapped reads
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new TensorFileException($"{Location}: no such file");
        }
        try
        {
            _header = SafeTensorsHeader.Read(_stream, Location);
            Names = _header.Entries.Select(e => e.Name).ToArray();
            _map = MemoryMappedFile.CreateFromFile(_stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: true);
        }
        catch
        {
            _stream.Dispose();
            throw;
        }
    }

    public string Location { get; }

    /// <summary>The header's <c>__metadata__</c> strings (empty when it has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>Tensor names in the order their bytes appear in the file.</summary>
    public IReadOnlyCollection<string> Names { get; }

    public bool Contains(string name) => _header.ByName.ContainsKey(name);

    public TensorInfo Describe(string name)
    {
        var entry = Find(name);
        return new TensorInfo(name, entry.DType, (long[])entry.Shape.Clone(), Location);
    }

    public Tensor Load(string name, ScalarType? dtype = null, TensorSlice? slice = null)
    {
        var entry = Find(name);
        var region = SliceRegion.Of(entry, slice, Location);

        using var scope = torch.NewDisposeScope();
        var tensor = torch.empty(region.Shape, entry.Type);
        if (region.Blocks > 0 && region.BlockBytes > 0)
            CopyInto(tensor, entry, region);
        if (dtype is { } wanted && wanted != entry.Type)
            tensor = tensor.to(wanted);
        return tensor.MoveToOuterDisposeScope();
    }

    SafeTensorsEntry Find(string name) => _header.ByName.TryGetValue(name, out var entry)
        ? entry
        : throw new TensorFileException($"{Location}: no tensor '{name}'");

    unsafe void CopyInto(Tensor tensor, SafeTensorsEntry entry, SliceRegion region)
    {
        var first = _header.DataStart + entry.Begin + region.FirstByte;
        var length = (region.Blocks - 1) * region.SourceStride + region.BlockBytes;

        // Reading a page past the end of a mapped file kills the process (SIGBUS) instead of throwing, so make sure
        // the file was not cut short since we validated its header.
        var fileLength = RandomAccess.GetLength(_stream.SafeFileHandle);
        if (first + length > fileLength)
            throw new TensorFileException(
                $"{Location}: tensor '{entry.Name}' needs bytes up to {first + length} of the file, but the file is now {fileLength} bytes long (truncated since it was opened)");

        using var view = _map.CreateViewAccessor(first, length, MemoryMappedFileAccess.Read);
        var handle = view.SafeMemoryMappedViewHandle;
        byte* source = null;
        handle.AcquirePointer(ref source);
        try
        {
            TensorMemory.GatherBlocks(source + view.PointerOffset, region.SourceStride, region.Blocks, region.BlockBytes,
                TensorMemory.DataPointer(tensor));
        }
        finally
        {
            handle.ReleasePointer();
        }
    }

    public void Dispose()
    {
        _map.Dispose();
        _stream.Dispose();
    }

    /// <summary>
    /// Where a slice's bytes lie inside a row-major tensor: for a slice of dimension d, one block per index of the
    /// dimensions before d, each block <c>Length * (product of the dimensions after d)</c> elements long and one full
    /// extent of d apart. A slice of dimension 0 (or no slice) is a single block.
    /// </summary>
    readonly record struct SliceRegion(long[] Shape, long FirstByte, long Blocks, long BlockBytes, long SourceStride)
    {
        public static SliceRegion Of(SafeTensorsEntry entry, TensorSlice? slice, string location)
        {
            var elementSize = SafeTensorsDType.SizeOf(entry.Type);
            if (slice is not { } s)
                return new SliceRegion((long[])entry.Shape.Clone(), 0, 1, entry.ByteCount, entry.ByteCount);

            var shape = entry.Shape;
            if (s.Dim < 0 || s.Dim >= shape.Length || s.Start < 0 || s.Length < 0 || s.Start + s.Length > shape[s.Dim])
                throw new TensorFileException(
                    $"{location}: tensor '{entry.Name}' has shape [{string.Join(", ", shape)}]; cannot take {s.Length} entries from {s.Start} along dimension {s.Dim}");

            long outer = 1, inner = elementSize;
            for (var i = 0; i < s.Dim; i++) outer *= shape[i];
            for (var i = s.Dim + 1; i < shape.Length; i++) inner *= shape[i];
            var sliced = (long[])shape.Clone();
            sliced[s.Dim] = s.Length;
            return new SliceRegion(sliced, s.Start * inner, outer, s.Length * inner, shape[s.Dim] * inner);
        }
    }
}
