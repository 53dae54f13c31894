using Runtime.Cluster.RunSpecs;
using Runtime.Training.Metrics;

namespace Runtime.Cluster.Driving;

/// <summary>
/// The run's metrics files, written by its driver: <c>&lt;output&gt;/metrics.jsonl</c> and (log.tensorboard = on)
/// TensorBoard events under <c>&lt;output&gt;/tensorboard</c>, every log.every-steps steps and after the last one; and the
/// pace of recent steps, for the progress events' ETA.
/// </summary>
public sealed class RunMetrics : IDisposable
{
    const int PaceWindow = 20;

    readonly List<IMetricsSink> _sinks = [];
    readonly Queue<double> _recentSeconds = new();
    readonly int _every;
    readonly long _totalSteps;

    public RunMetrics(RunSpec spec, long totalSteps)
    {
        _every = spec.Log.EverySteps;
        _totalSteps = totalSteps;
        try
        {
            _sinks.Add(new JsonLinesMetricsSink(Path.Combine(spec.Output, JsonLinesMetricsSink.DefaultFileName)));
            if (spec.Log.Tensorboard) _sinks.Add(new TensorBoardMetricsSink(Path.Combine(spec.Output, RunOutputs.TensorBoardFolder)));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public void Record(StepMetrics metrics)
    {
        _recentSeconds.Enqueue(metrics.Seconds);
        while (_recentSeconds.Count > PaceWindow) _recentSeconds.Dequeue();
        if (metrics.Step % _every != 0 && metrics.Step != _totalSteps) return;
        foreach (var sink in _sinks) sink.Write(metrics);
    }

    /// <summary>Seconds the steps after <paramref name="step"/> should take at the pace of the last few.</summary>
    public double EtaSeconds(long step) => _recentSeconds.Count == 0 ? 0 : _recentSeconds.Average() * Math.Max(0, _totalSteps - step);

    public void Dispose()
    {
        foreach (var sink in _sinks) sink.Dispose();
        _sinks.Clear();
    }
}
