using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>
/// `dotnet rt.dll ...` as a child process (the rt.dll built next to the tests): its output lines kept (and drained, so
/// a full pipe never blocks it), a way to wait for a line, signals, and a kill that always happens on dispose.
/// </summary>
public sealed class RtProcess : IDisposable
{
    readonly Process _process;
    readonly List<string> _lines = [];
    readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> _waits = [];

    RtProcess(Process process) => _process = process;

    public static RtProcess Start(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rt.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        var rt = new RtProcess(Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start"));
        rt._process.OutputDataReceived += (_, e) => rt.Add(e.Data, "");
        rt._process.ErrorDataReceived += (_, e) => rt.Add(e.Data, "err: ");
        rt._process.BeginOutputReadLine();
        rt._process.BeginErrorReadLine();
        return rt;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public IReadOnlyList<string> Lines
    {
        get { lock (_lines) return _lines.ToList(); }
    }

    public string Output => string.Join("\n", Lines);

    void Add(string? line, string prefix)
    {
        if (line is null) return;
        lock (_lines)
        {
            _lines.Add(prefix + line);
            foreach (var (match, seen) in _waits)
                if (match(line)) seen.TrySetResult(line);
        }
    }

    /// <summary>The first output line (stdout or stderr) that matches, already printed or still to come.</summary>
    public async Task<string> WaitForLine(Func<string, bool> match, string what, double seconds = 60)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            var earlier = _lines.Select(l => l.StartsWith("err: ", StringComparison.Ordinal) ? l[5..] : l).FirstOrDefault(match);
            if (earlier is not null) return earlier;
            _waits.Add((match, seen));
        }
        var exited = _process.WaitForExitAsync();
        var first = await Task.WhenAny(seen.Task, exited, Task.Delay(TimeSpan.FromSeconds(seconds)));
        if (first == seen.Task) return await seen.Task;
        // The line may have come with the last output before the exit.
        if (seen.Task.IsCompleted) return await seen.Task;
        throw new Xunit.Sdk.XunitException($"{(first == exited ? $"rt exited ({_process.ExitCode})" : $"timed out after {seconds} s")} " +
                                           $"waiting for {what}; output:\n{Output}");
    }

    public async Task<int> WaitForExit(double seconds = 120)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(seconds));
        }
        catch (TimeoutException)
        {
            throw new Xunit.Sdk.XunitException($"rt did not exit within {seconds} s; output:\n{Output}");
        }
        _process.WaitForExit(); // lets the output handlers finish
        return _process.ExitCode;
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    public const int SIGINT = 2;
    public const int SIGKILL = 9;

    public void Signal(int signal)
    {
        if (kill(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // never started or already reaped
        }
        _process.Dispose();
    }
}
