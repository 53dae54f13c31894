using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Runtime.Bench;

/// <summary>`rt node` processes on 127.0.0.1 (the rt.dll built next to this benchmark), killed on dispose.</summary>
internal sealed class NodeProcesses : IDisposable
{
    readonly List<Process> _processes = [];

    /// <summary>Starts `rt node --config <paramref name="config"/> --port <paramref name="port"/> ...` and waits until it is up.</summary>
    public void Start(string config, int port, int slots, string dataDir, string roles)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "rt.dll"), "node", "--config", config, "--port", port.ToString(),
                     "--slots", slots.ToString(), "--data-dir", dataDir, "--roles", roles })
            start.ArgumentList.Add(a);
        var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        _processes.Add(process);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var lines = new List<string>();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (lines) lines.Add(e.Data);
            if (e.Data.Contains(" is up: ", StringComparison.Ordinal)) up.TrySetResult();
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!up.Task.Wait(TimeSpan.FromSeconds(60)))
            throw new InvalidOperationException($"rt node :{port} did not come up:\n{string.Join("\n", lines)}");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
            }
            p.Dispose();
        }
    }
}
