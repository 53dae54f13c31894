using System.Globalization;
using System.Text;
using Runtime.Cluster.Driving;
using Runtime.Training.Planning;

namespace Runtime.Cli.Finetune;

/// <summary>
/// What `rt finetune` shows while a run trains. On a terminal: one line redrawn in place (a bar, step/total, loss, lr,
/// tokens/s, ETA), with notices (checkpoints, waiting for capacity, a lost attempt) printed above it. Elsewhere (a file,
/// a pipe, a test): one line per logged step (every log.every-steps, and the last) and the notices, nothing redrawn.
/// Progress events arrive one at a time (the watch's pump); notices from other threads (Ctrl+C) take the same lock.
/// </summary>
public sealed class ProgressView(TextWriter output, bool interactive, int logEvery)
{
    const int BarWidth = 24;

    readonly object _lock = new();
    readonly DateTime _started = DateTime.UtcNow;
    string _line = "";
    DateTime? _trainingSince;
    long _firstStep = -1;

    /// <summary>The first and the last step this invocation saw.</summary>
    public StepProgress? FirstStep { get; private set; }

    public StepProgress? LastStep { get; private set; }

    /// <summary>Labelled tokens of the steps this invocation saw.</summary>
    public long LabelledTokens { get; private set; }

    /// <summary>Seconds from the first TrainingStarted (or the start of the view) to now.</summary>
    public double TrainingSeconds => (DateTime.UtcNow - (_trainingSince ?? _started)).TotalSeconds;

    public List<CheckpointSaved> Checkpoints { get; } = [];

    public int Attempts { get; private set; }

    readonly Dictionary<Cluster.Sharding.WorkerId, WorkerMemory> _memory = new();
    readonly HashSet<(int Attempt, Cluster.Sharding.WorkerId Worker)> _memoryShown = new();

    /// <summary>Each worker's latest memory report (the last step's once the run has finished), in worker order.</summary>
    public IReadOnlyList<WorkerMemory> Memory
    {
        get
        {
            lock (_lock)
                return _memory.Values.OrderBy(m => m.Worker.Data).ThenBy(m => m.Worker.Pipeline).ThenBy(m => m.Worker.Tensor).ToList();
        }
    }

    public void OnProgress(IRunProgress progress)
    {
        lock (_lock)
        {
            switch (progress)
            {
                case PlacingWorkers p when p.Ready == 0:
                    Notice($"placing {p.Workers} worker{(p.Workers == 1 ? "" : "s")}{(p.Attempt > 1 ? $" (attempt {p.Attempt})" : "")}");
                    break;
                case WaitingForCapacity w:
                    Notice($"waiting for capacity: {w.Ready} of {w.Workers} workers placed after {w.WaitedSeconds:F0} s (no free slot; start more `rt node`s or wait)");
                    break;
                case TrainingStarted t:
                    _trainingSince ??= DateTime.UtcNow;
                    Attempts = t.Attempt;
                    Notice(t.ResumeStep == 0
                        ? $"training: {t.TotalSteps} steps on {t.Workers} worker{(t.Workers == 1 ? "" : "s")}"
                        : $"training: resuming after step {t.ResumeStep} of {t.TotalSteps} on {t.Workers} worker{(t.Workers == 1 ? "" : "s")}");
                    break;
                case StepProgress s:
                    OnStep(s);
                    break;
                case CheckpointSaved c:
                    Checkpoints.Add(c);
                    Notice($"checkpoint {c.Step} saved: {c.Folder}");
                    break;
                case WorkerMemory m:
                    _memory[m.Worker] = m;
                    // One line per worker when an attempt's first measurement arrives; the last is in the summary.
                    if (_memoryShown.Add((m.Attempt, m.Worker))) Notice(MemoryLine(m));
                    break;
                case AttemptAborted a:
                    Notice($"attempt {a.Attempt} lost: {a.Reason}; resuming from the last checkpoint");
                    break;
            }
        }
    }

    void OnStep(StepProgress s)
    {
        if (_firstStep < 0) _firstStep = s.Step;
        FirstStep ??= s;
        LastStep = s;
        LabelledTokens += s.LabelledTokens;
        var line = StepLine(s);
        if (interactive)
        {
            Redraw(line);
        }
        else if (s.Step % logEvery == 0 || s.Step == s.TotalSteps || s.Step == _firstStep)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }

    /// <summary>A line of its own, above the progress line on a terminal.</summary>
    public void Notice(string text)
    {
        lock (_lock)
        {
            if (interactive && _line.Length > 0)
            {
                output.Write("\r\u001b[K");
                output.WriteLine(text);
                output.Write(_line);
            }
            else
            {
                output.WriteLine(text);
            }
            output.Flush();
        }
    }

    /// <summary>Ends the progress line (a terminal keeps its last state).</summary>
    public void Close()
    {
        lock (_lock)
        {
            if (interactive && _line.Length > 0) output.WriteLine();
            _line = "";
            output.Flush();
        }
    }

    void Redraw(string line)
    {
        _line = line;
        output.Write("\r\u001b[K");
        output.Write(line);
        output.Flush();
    }

    string StepLine(StepProgress s)
    {
        var b = new StringBuilder();
        if (interactive)
        {
            int filled = s.TotalSteps == 0 ? 0 : (int)(BarWidth * s.Step / s.TotalSteps);
            b.Append('[').Append('#', filled).Append('.', BarWidth - filled).Append("] ");
        }
        b.Append(CultureInfo.InvariantCulture,
            $"step {s.Step}/{s.TotalSteps}  loss {s.Loss:F4}  lr {s.LearningRate:0.00e+00}  grad {s.GradNorm:F3}  {s.TokensPerSecond:N0} tok/s  ETA {Duration(s.EtaSeconds)}");
        return b.ToString();
    }

    /// <summary>
    /// "memory 0.1.0: measured 10.15 MB vs planned 10.32 MB (weights 2.39/2.39, trainable 0.07/0.07, gradients
    /// 0.07/0.07, optimizer 0.13/0.13, activations 7.50/7.67 MB)": a worker's measured and planned bytes by category.
    /// Without a measured activation peak (workers sharing a process) both totals leave the activations out.
    /// </summary>
    public static string MemoryLine(WorkerMemory m)
    {
        var (measured, planned) = (m.Measured, m.Planned);
        static string Pair(long a, long b) => $"{ByteText.Megabytes(a)}/{ByteText.Megabytes(b)}";
        var parameters = $"weights {Pair(measured.Weights, planned.Weights)}, trainable {Pair(measured.Trainable, planned.Trainable)}, " +
                         $"gradients {Pair(measured.Gradients, planned.Gradients)}, optimizer {Pair(measured.Optimizer, planned.Optimizer)}";
        var worker = $"memory {m.Worker.Data}.{m.Worker.Pipeline}.{m.Worker.Tensor}: ";
        if (measured.Activations is { } activations)
            return worker + $"measured {ByteText.Megabytes(measured.Total)} MB vs planned {ByteText.Megabytes(planned.Total)} MB " +
                   $"({parameters}, activations {Pair(activations, planned.Activations ?? 0)} MB)";
        long plannedWithout = planned.Total - (planned.Activations ?? 0);
        return worker + $"measured {ByteText.Megabytes(measured.Total)} MB vs planned {ByteText.Megabytes(plannedWithout)} MB without activations " +
               $"({parameters} MB; activations planned {ByteText.Megabytes(planned.Activations ?? 0)} MB, not measured: " +
               $"{m.WorkersInProcess} workers share the process's allocator)";
    }

    public static string Duration(double seconds)
    {
        if (!double.IsFinite(seconds) || seconds < 0) return "?";
        var t = TimeSpan.FromSeconds(Math.Round(seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{t.Minutes}:{t.Seconds:00}";
    }
}
