namespace Runtime.Training.Data;

/// <summary>
/// A keyed pseudo-random permutation of [0, n), evaluated index by index in O(1) without materialising it: a balanced
/// Feistel network on 2h bits (the smallest even width with 4^h >= n) whose round function is SplitMix64 of the right
/// half and a round key, made to stay inside [0, n) by cycle walking (apply the network again while the result is
/// &gt;= n; since 4^h &lt; 4n, on average fewer than 4 applications). A Feistel network is a bijection whatever the
/// round function, so the result is always a permutation; 8 rounds make it well mixed.
/// </summary>
public sealed class FeistelPermutation
{
    const int Rounds = 8;
    readonly ulong[] _keys = new ulong[Rounds];
    readonly int _halfBits;
    readonly ulong _halfMask;

    public FeistelPermutation(long count, ulong key)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "a permutation needs at least one element");
        Count = count;
        _halfBits = 1;
        while (_halfBits < 31 && (1L << (2 * _halfBits)) < count) _halfBits++;
        _halfMask = (1UL << _halfBits) - 1;
        for (int r = 0; r < Rounds; r++) _keys[r] = SplitMix64.At(key, (ulong)r);
    }

    public long Count { get; }

    public long this[long index]
    {
        get
        {
            if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"the permutation is of 0..{Count - 1}");
            if (Count == 1) return 0;
            ulong x = (ulong)index;
            do x = Encrypt(x); while (x >= (ulong)Count);
            return (long)x;
        }
    }

    ulong Encrypt(ulong x)
    {
        ulong left = x >> _halfBits, right = x & _halfMask;
        foreach (var key in _keys)
        {
            ulong next = left ^ (SplitMix64.Mix(right ^ key) & _halfMask);
            left = right;
            right = next;
        }
        return (left << _halfBits) | right;
    }
}
