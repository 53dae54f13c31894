using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Runtime.Cli.Commands;

namespace Runtime.Cli.Tests;

public class NodeCommandTests
{
    static (int Exit, string Out, string Err) Node(params string[] args)
    {
        var root = new RootCommand("rt");
        root.Subcommands.Add(NodeCommand.Create());
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(["node", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) return dir.FullName;
        throw new InvalidOperationException("no Runtime.sln above the test folder");
    }

    [Theory]
    [InlineData("--slots", "many", "--slots must be auto or a whole number")]
    [InlineData("--seed", "10.0.0.1:4053", "akka.cluster.seed-nodes: \"10.0.0.1:4053\"")]
    [InlineData("--config", "/nonexistent/node.conf", "/nonexistent/node.conf: no such file")]
    public void Bad_input_exits_1_naming_what_is_wrong(string option, string value, string message)
    {
        var (exit, _, err) = Node(option, value, "--port", "0");
        Assert.Equal(1, exit);
        Assert.Contains(message, err);
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    const int SIGTERM = 15;

    [Fact]
    public async Task Rt_node_runs_until_sigterm_then_leaves_and_exits_0()
    {
        if (!OperatingSystem.IsLinux()) return; // signals as used here are POSIX; CI is Linux
        var dir = Path.Combine(Path.GetTempPath(), "rt-node-test-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            // node.conf, but as the only node: no seeds, so it joins itself.
            var conf = Path.Combine(dir, "single.conf");
            File.WriteAllText(conf, $"include \"{Path.Combine(RepoRoot(), "hocon", "node.conf")}\"\nakka.cluster.seed-nodes = []\nakka.loglevel = WARNING\n");
            var start = new ProcessStartInfo("dotnet")
            {
                ArgumentList = { Path.Combine(AppContext.BaseDirectory, "rt.dll"), "node", "--config", conf, "--port", "0", "--slots", "2", "--data-dir", Path.Combine(dir, "data") },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = dir,
            };
            using var process = Process.Start(start)!;
            var up = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var lines = new List<string>();
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                lock (lines) lines.Add(e.Data);
                if (e.Data.Contains(" is up: ")) up.TrySetResult(e.Data);
            };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add("err: " + e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                var upLine = await up.Task.WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Matches(@"^runtime node akka\.tcp://runtime@127\.0\.0\.1:\d+ is up: 2 CPU slots of \d+\.\d+ [GM]B, roles coordinator,slot-kind:cpu,slot-memory:\d+,slots:2,worker, data ", upLine);

                Assert.Equal(0, kill(process.Id, SIGTERM));
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.True(process.ExitCode == 0, $"exit code {process.ExitCode}; output:\n{string.Join("\n", lines)}");
                lock (lines) Assert.Contains(lines, l => l.EndsWith("stopped: left the cluster"));
                Assert.True(File.Exists(Path.Combine(dir, "data", "journal.db")));
            }
            finally
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
