using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Llama;

/// <summary>
/// Keys and values of past tokens, per decoder layer (by global layer index, so one cache can serve several slices),
/// each [batch, kv_heads, length, head_dim] after rotary. Buffers grow by doubling, so appending one token copies
/// nothing but that token. Inference only: run under <c>torch.no_grad()</c>.
/// </summary>
public sealed class KvCache : IDisposable
{
    sealed class Entry(Tensor keys, Tensor values)
    {
        public Tensor Keys = keys;
        public Tensor Values = values;
        public long Length;
        public long Capacity => Keys.shape[2];
    }

    readonly Dictionary<int, Entry> layers = [];
    readonly long initialCapacity;

    /// <param name="initialCapacity">Tokens to reserve per layer at the first append (prompt plus new tokens is ideal).</param>
    public KvCache(long initialCapacity = 256)
    {
        if (initialCapacity <= 0) throw new ArgumentOutOfRangeException(nameof(initialCapacity), "must be positive");
        this.initialCapacity = initialCapacity;
    }

    /// <summary>Tokens cached for <paramref name="layer"/> (0 before its first append).</summary>
    public long LengthOf(int layer) => layers.TryGetValue(layer, out var e) ? e.Length : 0;

    /// <summary>
    /// Appends keys/values [batch, kv_heads, new, head_dim] of <paramref name="layer"/> and returns views of all its
    /// cached keys and values (the caller's dispose scope owns the views; the cache owns the buffers).
    /// </summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        if (is_grad_enabled() && (keys.requires_grad || values.requires_grad))
            throw new InvalidOperationException("the KV cache is for inference: run generation under torch.no_grad()");
        long added = keys.shape[2];
        if (!layers.TryGetValue(layer, out var entry))
        {
            entry = new Entry(Allocate(keys, Math.Max(initialCapacity, added)), Allocate(values, Math.Max(initialCapacity, added)));
            layers[layer] = entry;
        }
        else if (keys.shape[0] != entry.Keys.shape[0] || keys.shape[1] != entry.Keys.shape[1] || keys.shape[3] != entry.Keys.shape[3])
        {
            throw new ArgumentException(
                $"layer {layer}: cached keys are [{string.Join(", ", entry.Keys.shape)}], cannot append [{string.Join(", ", keys.shape)}]");
        }

        if (entry.Length + added > entry.Capacity)
        {
            long capacity = Math.Max(2 * entry.Capacity, entry.Length + added);
            entry.Keys = Grow(entry.Keys, entry.Length, capacity);
            entry.Values = Grow(entry.Values, entry.Length, capacity);
        }
        using (no_grad())
        {
            entry.Keys.narrow(2, entry.Length, added).copy_(keys);
            entry.Values.narrow(2, entry.Length, added).copy_(values);
        }
        entry.Length += added;
        return (entry.Keys.narrow(2, 0, entry.Length), entry.Values.narrow(2, 0, entry.Length));
    }

    static Tensor Allocate(Tensor like, long capacity)
    {
        var buffer = empty([like.shape[0], like.shape[1], capacity, like.shape[3]], like.dtype, like.device);
        buffer.DetachFromDisposeScope();
        return buffer;
    }

    static Tensor Grow(Tensor buffer, long length, long capacity)
    {
        var grown = Allocate(buffer, capacity);
        using (no_grad())
        using (var used = buffer.narrow(2, 0, length))
        using (var target = grown.narrow(2, 0, length))
            target.copy_(used);
        buffer.Dispose();
        return grown;
    }

    /// <summary>Forgets every cached token (frees the buffers).</summary>
    public void Clear()
    {
        foreach (var e in layers.Values)
        {
            e.Keys.Dispose();
            e.Values.Dispose();
        }
        layers.Clear();
    }

    public void Dispose() => Clear();
}
