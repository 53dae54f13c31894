using System.CommandLine;
using Runtime.Cli.Commands;

namespace Runtime.Cli.Tests;

/// <summary>The Hugging Face reference fixtures of Runtime.Model.Tests, and a way to run `rt` commands capturing output.</summary>
public static class CliFixtures
{
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Runtime.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Fixtures/hf-parity/{name}: micro-untied (a transformers fp32 Llama), micro-untied-lora (a PEFT adapter), ...</summary>
    public static string HfParity(string name) =>
        Path.Combine(RepositoryRoot(), "tests", "Runtime.Model.Tests", "Fixtures", "hf-parity", name);

    /// <summary>Runs `rt merge` / `rt quantize` as `rt` parses them, capturing stdout and stderr.</summary>
    public static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("rt");
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(QuantizeCommand.Create());
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    /// <summary>A fresh temporary folder path (not created), removed with its contents on dispose.</summary>
    public sealed class Scratch : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "rt-cli-" + Guid.NewGuid().ToString("N"));

        public string Sub(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
        }
    }
}
