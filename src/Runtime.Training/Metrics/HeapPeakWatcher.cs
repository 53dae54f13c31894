namespace Runtime.Training.Metrics;

/// <summary>
/// The highest <see cref="NativeHeap.BytesInUse"/> seen since the last <see cref="Reset"/>, sampled by a background
/// thread in a tight loop (a few microseconds a sample) while the training thread runs. glibc keeps no high-water
/// mark of bytes in use, and autograd's peaks (a loss gradient of seq x vocab floats, a layer's recompute) happen
/// inside single calls, so sampling from the side is the way to see them; a plateau shorter than one sample can be
/// missed, the large ones last milliseconds. The watcher takes CPU time and arena locks: use it for measuring steps,
/// not in production runs.
/// </summary>
public sealed class HeapPeakWatcher : IDisposable
{
    readonly Thread _thread;
    volatile bool _stopping;
    long _peak;

    public HeapPeakWatcher()
    {
        if (!NativeHeap.IsAvailable) throw new PlatformNotSupportedException("glibc's mallinfo2 is not available: the native heap cannot be measured here");
        _peak = NativeHeap.BytesInUse();
        _thread = new Thread(Watch) { IsBackground = true, Name = "heap peak watcher", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    /// <summary>The highest reading since the last reset (including a reading taken by this call).</summary>
    public long Peak
    {
        get
        {
            Observe(NativeHeap.BytesInUse());
            return Interlocked.Read(ref _peak);
        }
    }

    /// <summary>Starts a new window: the peak becomes the current reading.</summary>
    public void Reset() => Interlocked.Exchange(ref _peak, NativeHeap.BytesInUse());

    void Watch()
    {
        while (!_stopping)
        {
            Observe(NativeHeap.BytesInUse());
            // A short pause keeps the time slice (a yield would give it away whenever the machine is busy) while
            // leaving the arena locks mostly to the threads that allocate.
            Thread.SpinWait(64);
        }
    }

    void Observe(long value)
    {
        long seen = Interlocked.Read(ref _peak);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref _peak, value, seen);
            if (previous == seen) return;
            seen = previous;
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _thread.Join();
    }
}
