using System.Text.Json;
using Runtime.Model.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Checkpoints;

/// <summary>One shard file's part of a tensor: the file, and the slice of the full tensor it holds (null: all of it).</summary>
public sealed record CheckpointTensorPiece(string File, TensorSlice? Slice);

/// <summary>A tensor of a checkpoint by canonical name: its dtype, full shape, and the shard pieces that cover it.</summary>
public sealed record CheckpointTensorInfo(string Name, string DType, long[] FullShape, IReadOnlyList<CheckpointTensorPiece> Pieces);

/// <summary>
/// The tensors of one kind (trainable, or optimizer state) across a checkpoint's shard files, indexed by name from
/// each file's slice metadata. Every tensor must be covered exactly once: one whole piece, or slices along one
/// dimension that tile it without gap or overlap. Loads read only the bytes of the requested region, piece by piece.
/// </summary>
internal sealed class ShardedTensors
{
    sealed record Piece(SafeTensorsFile Source, TensorSlice? Slice);

    sealed class Entry(string name, string dtype, ScalarType type, long[] fullShape)
    {
        public string Name { get; } = name;
        public string DType { get; } = dtype;
        public ScalarType Type { get; } = type;
        public long[] FullShape { get; } = fullShape;
        public List<Piece> Pieces { get; } = [];
    }

    readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public ShardedTensors(string kind, string location)
    {
        Kind = kind;
        Location = location;
    }

    /// <summary>"trainable" or "optimizer", for messages.</summary>
    public string Kind { get; }

    /// <summary>The checkpoint folder, for messages.</summary>
    public string Location { get; }

    public IReadOnlyCollection<string> Names => _entries.Keys;

    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>Indexes every tensor of a shard file by the full shape and slice its metadata records.</summary>
    public void AddFile(SafeTensorsFile file)
    {
        if (!file.Metadata.TryGetValue(CheckpointShardWriter.SlicesMetadataKey, out var slicesJson))
            throw new CheckpointException($"{file.Location}: no '{CheckpointShardWriter.SlicesMetadataKey}' metadata (not a checkpoint shard)");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(slicesJson);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{file.Location}: '{CheckpointShardWriter.SlicesMetadataKey}' metadata is not valid JSON ({e.Message})");
        }
        using (document)
        {
            var slices = new JsonFields(document.RootElement, file.Location, CheckpointShardWriter.SlicesMetadataKey);
            foreach (var name in file.Names)
            {
                if (!document.RootElement.TryGetProperty(name, out _))
                    throw new CheckpointException($"{file.Location}: tensor '{name}' has no entry in '{CheckpointShardWriter.SlicesMetadataKey}'");
                var placement = slices.Object(name);
                var fullShape = placement.Longs("full_shape");
                var sliceFields = placement.OptionalObject("slice");
                TensorSlice? slice = sliceFields is { } s ? new TensorSlice((int)s.Long("dim"), s.Long("start"), s.Long("length")) : null;
                Add(file, name, fullShape, slice);
            }
        }
    }

    void Add(SafeTensorsFile file, string name, long[] fullShape, TensorSlice? slice)
    {
        var info = file.Describe(name);
        var part = (long[])fullShape.Clone();
        if (slice is { } s)
        {
            if (s.Dim < 0 || s.Dim >= fullShape.Length || s.Start < 0 || s.Length < 1 || s.Start + s.Length > fullShape[s.Dim])
                throw new CheckpointException(
                    $"{file.Location}: tensor '{name}': slice dim {s.Dim} [{s.Start}, {s.Start + s.Length}) does not fit its full shape {Shape(fullShape)}");
            part[s.Dim] = s.Length;
        }
        if (!info.Shape.SequenceEqual(part))
            throw new CheckpointException($"{file.Location}: tensor '{name}' is stored as {Shape(info.Shape)} but its metadata says {Shape(part)}");
        if (!SafeTensorsDType.TryParse(info.DType, out var type))
            throw new CheckpointException($"{file.Location}: tensor '{name}' has dtype {info.DType}, which cannot be read");

        if (!_entries.TryGetValue(name, out var entry))
            _entries[name] = entry = new Entry(name, info.DType, type, fullShape);
        else if (!entry.FullShape.SequenceEqual(fullShape) || entry.DType != info.DType)
            throw new CheckpointException(
                $"{file.Location}: tensor '{name}' is {info.DType} {Shape(fullShape)} here but {entry.DType} {Shape(entry.FullShape)} in {Path.GetFileName(entry.Pieces[0].Source.Location)}");
        entry.Pieces.Add(new Piece(file, slice));
    }

    /// <summary>Checks that every tensor is covered exactly once (names the tensor, the files and the gap or overlap).</summary>
    public void CheckCoverage()
    {
        foreach (var entry in _entries.Values)
        {
            string files = string.Join(", ", entry.Pieces.Select(p => Path.GetFileName(p.Source.Location)));
            if (entry.Pieces.Any(p => p.Slice is null))
            {
                if (entry.Pieces.Count > 1)
                    throw new CheckpointException($"{Location}: {Kind} tensor '{entry.Name}' is stored whole and again in part ({files})");
                continue;
            }
            var dims = entry.Pieces.Select(p => p.Slice!.Value.Dim).Distinct().ToList();
            if (dims.Count > 1)
                throw new CheckpointException($"{Location}: {Kind} tensor '{entry.Name}' is sliced along several dimensions ({files})");
            int dim = dims[0];
            long covered = 0;
            foreach (var piece in entry.Pieces.OrderBy(p => p.Slice!.Value.Start))
            {
                var s = piece.Slice!.Value;
                if (s.Start != covered)
                    throw new CheckpointException(s.Start > covered
                        ? $"{Location}: {Kind} tensor '{entry.Name}' misses [{covered}, {s.Start}) along dimension {dim} (a shard is missing? pieces in {files})"
                        : $"{Location}: {Kind} tensor '{entry.Name}' has overlapping slices at {s.Start} along dimension {dim} ({files})");
                covered = s.Start + s.Length;
            }
            if (covered != entry.FullShape[dim])
                throw new CheckpointException(
                    $"{Location}: {Kind} tensor '{entry.Name}' covers only [0, {covered}) of {entry.FullShape[dim]} along dimension {dim} (a shard is missing? pieces in {files})");
        }
    }

    public CheckpointTensorInfo Describe(string name)
    {
        var entry = Find(name);
        return new CheckpointTensorInfo(name, entry.DType, (long[])entry.FullShape.Clone(),
            entry.Pieces.Select(p => new CheckpointTensorPiece(Path.GetFileName(p.Source.Location), p.Slice)).ToList());
    }

    /// <summary>The full tensor, or the <paramref name="slice"/> of it, assembled from its pieces into a new CPU tensor.</summary>
    public Tensor Load(string name, ScalarType? dtype, TensorSlice? slice)
    {
        var entry = Find(name);
        var full = entry.FullShape;
        if (slice is { } r && (r.Dim < 0 || r.Dim >= full.Length || r.Start < 0 || r.Length < 0 || r.Start + r.Length > full[r.Dim]))
            throw new CheckpointException(
                $"{Location}: {Kind} tensor '{name}' has shape {Shape(full)}; cannot take {r.Length} entries from {r.Start} along dimension {r.Dim}");

        if (entry.Pieces is [{ Slice: null } whole]) return whole.Source.Load(name, dtype, slice);

        using var scope = NewDisposeScope();
        var shape = (long[])full.Clone();
        if (slice is { } request) shape[request.Dim] = request.Length;
        var result = empty(shape, entry.Type);
        foreach (var piece in entry.Pieces)
        {
            using var pieceScope = NewDisposeScope();
            var p = piece.Slice!.Value;
            if (slice is not { } q || q.Dim == p.Dim)
            {
                // Along the pieces' dimension: copy the overlap of this piece with the request.
                long from = slice?.Start ?? 0, to = from + (slice?.Length ?? full[p.Dim]);
                long lo = Math.Max(p.Start, from), hi = Math.Min(p.Start + p.Length, to);
                if (lo >= hi) continue;
                var part = piece.Source.Load(name, null, new TensorSlice(p.Dim, lo - p.Start, hi - lo));
                result.narrow(p.Dim, lo - from, hi - lo).copy_(part);
            }
            else
            {
                // Across them: every piece holds the requested range of the other dimension for its own rows.
                var part = piece.Source.Load(name, null, q);
                result.narrow(p.Dim, p.Start, p.Length).copy_(part);
            }
        }
        if (dtype is { } wanted && wanted != entry.Type) result = result.to(wanted);
        return result.MoveToOuterDisposeScope();
    }

    Entry Find(string name) => _entries.TryGetValue(name, out var entry)
        ? entry
        : throw new CheckpointException($"{Location}: no {Kind} tensor '{name}'");

    static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
