using System.CommandLine;

namespace Runtime.Cli;

/// <summary>The `rt` command tree.</summary>
public static class RtCommand
{
    public static int Run(string[] args)
    {
        var root = new RootCommand("Runtime: actor-based distributed fine-tuning for Llama-family models");
        root.Subcommands.Add(Commands.PlanCommand.Create());
        root.Subcommands.Add(Commands.NodeCommand.Create());
        return root.Parse(args).Invoke();
    }
}
