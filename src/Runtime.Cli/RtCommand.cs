using System.CommandLine;

namespace Runtime.Cli;

/// <summary>The `rt` command tree.</summary>
public static class RtCommand
{
    public static RootCommand Build()
    {
        var root = new RootCommand("Runtime: actor-based distributed fine-tuning for Llama-family models");
        root.Subcommands.Add(Commands.InitCommand.Create());
        root.Subcommands.Add(Commands.GenerateCommand.Create());
        root.Subcommands.Add(Commands.ScoreCommand.Create());
        root.Subcommands.Add(Commands.MergeCommand.Create());
        root.Subcommands.Add(Commands.QuantizeCommand.Create());
        root.Subcommands.Add(Commands.PlanCommand.Create());
        root.Subcommands.Add(Commands.ExportCommand.Create());
        root.Subcommands.Add(Commands.NodeCommand.Create());
        root.Subcommands.Add(Commands.FinetuneCommand.Create());
        return root;
    }

    public static int Run(string[] args) => Build().Parse(args).Invoke();
}
