namespace Runtime.Training.Data;

/// <summary>Seed and order of a <see cref="GlobalSampler"/>.</summary>
public sealed record SamplerOptions(ulong Seed)
{
    /// <summary>Visit each epoch in a seeded permutation (false: in example order).</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>
    /// Length grouping (Hugging Face's group_by_length): 0 for none, else the number of consecutive positions of an epoch
    /// (a window) whose examples are put in order of decreasing length, so micro-batches hold similar lengths and waste
    /// little padding, while the windows keep the shuffle's randomness. Hugging Face uses 50 x the batch size; pass
    /// 50 x the global batch for the same. Keep it fixed for a run: it is part of the order.
    /// </summary>
    public int LengthGroupingWindow { get; init; }
}

/// <summary>
/// Decides which example is at each global position, and so which examples every step, micro-batch and replica gets.
/// The whole state of the data order is ONE number, the position p = examples consumed since the start of training:
/// epoch e = p / N and offset o = p % N give example <c>perm_e(o)</c>, where <c>perm_e</c> is a
/// <see cref="FeistelPermutation"/> keyed by SplitMix64(seed, e). Nothing is drawn from a shared generator, so any
/// worker computes any position, a resumed run continues at exactly the next example, and a run laid out differently
/// (other data-parallel degree) sees the same examples in the same global micro-batches.
/// <para>Steps: step k (with a constant global batch G) covers positions [kG, (k+1)G); its global micro-batch j
/// (0 &lt;= j &lt; accumulation x dp) covers kG + j*mbs .. kG + (j+1)*mbs - 1; replica d takes the j with j % dp == d.
/// A step may straddle two epochs: positions simply run on into the next epoch's permutation, so every step has
/// exactly G examples. Unlike Hugging Face's Trainer (which restarts its sampler each epoch and, with
/// dataloader_drop_last=False, ends each epoch with a short micro-batch and a short accumulation), no batch is ever
/// partial here; see <see cref="TotalSteps"/>.</para>
/// <para>With <see cref="SamplerOptions.LengthGroupingWindow"/> W, each epoch is cut into windows of W offsets
/// [bW, min((b+1)W, N)), and within a window the permuted examples are sorted by decreasing length (ties keep
/// permutation order): still a pure function of the position.</para>
/// Thread-safe.
/// </summary>
public sealed class GlobalSampler
{
    readonly Func<int, int>? _lengthOf;
    readonly object _gate = new();
    FeistelPermutation? _permutation;        // of the last epoch asked for
    long _permutationEpoch = -1;
    int[]? _window;                          // the last length-sorted window, and where it is
    long _windowEpoch = -1, _windowIndex = -1;

    public GlobalSampler(int exampleCount, SamplerOptions options, Func<int, int>? lengthOf = null)
    {
        if (exampleCount < 1) throw new ArgumentOutOfRangeException(nameof(exampleCount), exampleCount, "there are no examples to sample");
        if (options.LengthGroupingWindow < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.LengthGroupingWindow, "the length-grouping window cannot be negative");
        if (options.LengthGroupingWindow > 0 && lengthOf is null)
            throw new ArgumentException("length grouping needs the examples' lengths", nameof(lengthOf));
        ExampleCount = exampleCount;
        Options = options;
        _lengthOf = lengthOf;
    }

    public GlobalSampler(IExampleSet examples, SamplerOptions options) : this(examples.Count, options, examples.Length)
    {
    }

    public int ExampleCount { get; }

    public SamplerOptions Options { get; }

    public long EpochOf(long position) => CheckPosition(position) / ExampleCount;

    /// <summary>The example at a global position.</summary>
    public int ExampleAt(long position)
    {
        long epoch = EpochOf(position);
        int offset = (int)(position % ExampleCount);
        if (Options.LengthGroupingWindow == 0) return Permuted(epoch, offset);
        int window = Options.LengthGroupingWindow;
        long index = offset / window;
        lock (_gate)
        {
            if (_window is null || _windowEpoch != epoch || _windowIndex != index)
            {
                _window = SortedWindow(epoch, (int)(index * window), (int)Math.Min((index + 1) * window, ExampleCount));
                _windowEpoch = epoch;
                _windowIndex = index;
            }
            return _window[offset - (int)(index * window)];
        }
    }

    /// <summary>Every example of an epoch in visiting order (the positions eN .. eN + N - 1).</summary>
    public int[] EpochOrder(long epoch)
    {
        if (epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "epochs start at 0");
        var order = new int[ExampleCount];
        for (int o = 0; o < ExampleCount; o++) order[o] = ExampleAt(epoch * ExampleCount + o);
        return order;
    }

    /// <summary>Step <paramref name="step"/> of a run whose global batch never changed: it starts at step x G.</summary>
    public StepPlan Step(long step, BatchLayout layout)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "steps start at 0");
        return StepAt(step * layout.GlobalBatch, layout);
    }

    /// <summary>The step that starts at a saved position (the general case: the global batch may have changed on resume).</summary>
    public StepPlan StepAt(long startPosition, BatchLayout layout)
    {
        CheckPosition(startPosition);
        var microBatches = new GlobalMicroBatch[layout.MicroBatchesPerStep];
        for (int j = 0; j < microBatches.Length; j++)
        {
            long first = startPosition + (long)j * layout.MicroBatchSize;
            var examples = new int[layout.MicroBatchSize];
            for (int t = 0; t < examples.Length; t++) examples[t] = ExampleAt(first + t);
            microBatches[j] = new GlobalMicroBatch(j, first, examples);
        }
        return new StepPlan(startPosition, layout, microBatches);
    }

    /// <summary>The micro-batches replica <paramref name="replica"/> runs in step <paramref name="step"/>, with their global index j.</summary>
    public IReadOnlyList<GlobalMicroBatch> ReplicaMicroBatches(long step, BatchLayout layout, int replica) =>
        Step(step, layout).ForReplica(replica);

    /// <summary>
    /// Steps in <paramref name="epochs"/> epochs (fractions allowed): floor(epochs x N / G). Only whole steps run;
    /// the at most G - 1 positions left over are not trained (Hugging Face would run them as a short last batch).
    /// </summary>
    public static long TotalSteps(long exampleCount, double epochs, BatchLayout layout)
    {
        if (epochs <= 0 || double.IsNaN(epochs) || double.IsInfinity(epochs))
            throw new ArgumentOutOfRangeException(nameof(epochs), epochs, "epochs must be positive");
        return (long)Math.Floor(epochs * exampleCount) / layout.GlobalBatch;
    }

    int Permuted(long epoch, int offset)
    {
        if (!Options.Shuffle) return offset;
        FeistelPermutation permutation;
        lock (_gate)
        {
            if (_permutation is null || _permutationEpoch != epoch)
            {
                _permutation = new FeistelPermutation(ExampleCount, SplitMix64.At(Options.Seed, (ulong)epoch));
                _permutationEpoch = epoch;
            }
            permutation = _permutation;
        }
        return (int)permutation[offset];
    }

    int[] SortedWindow(long epoch, int start, int end)
    {
        var examples = new int[end - start];
        var lengths = new int[examples.Length];
        var order = new int[examples.Length];
        for (int i = 0; i < examples.Length; i++)
        {
            examples[i] = Permuted(epoch, start + i);
            lengths[i] = _lengthOf!(examples[i]);
            order[i] = i;
        }
        // Longest first; equal lengths keep permutation order, so the sort is fully determined.
        Array.Sort(order, (a, b) => lengths[a] != lengths[b] ? lengths[b].CompareTo(lengths[a]) : a.CompareTo(b));
        var sorted = new int[order.Length];
        for (int i = 0; i < order.Length; i++) sorted[i] = examples[order[i]];
        return sorted;
    }

    static long CheckPosition(long position) =>
        position >= 0 ? position : throw new ArgumentOutOfRangeException(nameof(position), position, "positions start at 0");
}
