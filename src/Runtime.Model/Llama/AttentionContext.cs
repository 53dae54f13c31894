using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// What every layer of a slice needs to attend, computed once per micro-batch: rotary cos/sin for the positions, the
/// mask for the chosen attention implementation, and the KV cache if generating. Masks are causal by token index
/// (a query at index i sees keys 0..i, counting cached tokens) and, for packed rows, block-diagonal: a token sees only
/// earlier tokens with its own segment id. Positions come from the caller (they restart per packed segment).
/// Create with <see cref="LlamaSlice.CreateContext"/>; dispose after the forward (and backward, when recomputing).
/// </summary>
public sealed class AttentionContext : IDisposable
{
    internal AttentionContext(RotaryEmbedding rotary, Tensor positions, Tensor? segmentIds, ScalarType dtype,
        AttentionImplementation implementation, KvCache? cache, long pastLength, StepRandomness? randomness = null)
    {
        if (positions.dim() != 2 || positions.dtype != ScalarType.Int64)
            throw new ArgumentException($"positions must be int64 [batch, seq]; got {positions.dtype} [{string.Join(", ", positions.shape)}]");
        if (segmentIds is not null && !segmentIds.shape.SequenceEqual(positions.shape))
            throw new ArgumentException(
                $"segment ids [{string.Join(", ", segmentIds.shape)}] must have the shape of positions [{string.Join(", ", positions.shape)}]");
        if (segmentIds is not null && pastLength > 0)
            throw new ArgumentException("packed segments cannot be combined with a non-empty KV cache");

        Positions = positions;
        SegmentIds = segmentIds;
        Randomness = randomness;
        Cache = cache;
        PastLength = pastLength;
        Implementation = implementation;
        DType = dtype;

        using var scope = NewDisposeScope();
        var (cos, sin) = rotary.CosSin(positions, dtype);
        Cos = cos.DetachFromDisposeScope();
        Sin = sin.DetachFromDisposeScope();

        long length = positions.shape[1];
        if (implementation == AttentionImplementation.ScaledDotProduct && segmentIds is null && (pastLength == 0 || length == 1))
        {
            // Fast paths of the fused kernel: plain causal over the block, or one new token that sees everything.
            IsCausal = pastLength == 0;
            return;
        }
        var allowed = Allowed(positions.shape[0], length, pastLength, segmentIds, positions.device);
        Mask = implementation == AttentionImplementation.Eager
            // HF's additive mask: 0 where allowed, the dtype's most negative finite value elsewhere.
            ? zeros(allowed.shape, dtype, positions.device).masked_fill(allowed.logical_not(), finfo(dtype).min).DetachFromDisposeScope()
            : allowed.DetachFromDisposeScope();
    }

    static Tensor Allowed(long batch, long length, long past, Tensor? segmentIds, Device device)
    {
        var queryIndex = arange(past, past + length, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var keyIndex = arange(0, past + length, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var causal = keyIndex.le(queryIndex); // [seq, past + seq]
        if (segmentIds is null) return causal.unsqueeze(0).unsqueeze(0);
        var sameSegment = segmentIds.unsqueeze(2).eq(segmentIds.unsqueeze(1)); // [batch, seq, seq]
        return sameSegment.logical_and(causal).unsqueeze(1);
    }

    /// <summary>[batch, seq] int64, as given.</summary>
    public Tensor Positions { get; }

    /// <summary>[batch, seq] segment ids of packed rows, or null for one sequence per row.</summary>
    public Tensor? SegmentIds { get; }

    /// <summary>[batch, seq, head_dim] in the activation dtype.</summary>
    public Tensor Cos { get; }

    public Tensor Sin { get; }

    public KvCache? Cache { get; }

    /// <summary>Set while training: the counters dropout draws from. Null in evaluation, scoring and generation.</summary>
    public StepRandomness? Randomness { get; }

    /// <summary>Tokens already in the cache before this forward.</summary>
    public long PastLength { get; }

    public AttentionImplementation Implementation { get; }

    public ScalarType DType { get; }

    /// <summary>
    /// Eager: additive [batch or 1, 1, seq, past + seq] in the activation dtype. Fused: boolean (true = attend), or
    /// null when <see cref="IsCausal"/> or a single new token needs none.
    /// </summary>
    public Tensor? Mask { get; }

    /// <summary>Fused path only: let the kernel apply the plain causal mask itself.</summary>
    public bool IsCausal { get; }

    public long BatchSize => Positions.shape[0];

    public long Length => Positions.shape[1];

    /// <summary>Positions 0..length-1 (plus <paramref name="start"/>) for every row: [batch, length] int64.</summary>
    public static Tensor SequentialPositions(long batch, long length, long start = 0, Device? device = null)
    {
        using var scope = NewDisposeScope();
        return arange(start, start + length, dtype: ScalarType.Int64, device: device)
            .unsqueeze(0).expand(batch, length).contiguous().MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Cos.Dispose();
        Sin.Dispose();
        Mask?.Dispose();
    }
}
