using Runtime.Bench;

// Benchmarks as commands: `dotnet run --project tests/Runtime.Bench -c Release -- <command> [options]`.
var commands = new Dictionary<string, (string Help, Func<string[], int> Run)>(StringComparer.Ordinal)
{
    ["forward"] = ("forward tokens/s of a preset per dtype vs the same dtype's matmul GFLOP/s (MFU)", ForwardBench.Run),
    ["channel"] = ("tensor channel throughput between two processes on 127.0.0.1 vs a raw TCP copy; in-process hand-over time", ChannelBench.Run),
    [ChannelBench.ReceiverCommand] = ("(internal) the receiving process that `channel` starts", ChannelBench.RunReceiver),
};

if (args.Length == 0 || !commands.TryGetValue(args[0], out var command))
{
    Console.Error.WriteLine(args.Length == 0 ? "no command given" : $"unknown command '{args[0]}'");
    Console.Error.WriteLine("usage: Runtime.Bench <command> [options]");
    foreach (var (name, (help, _)) in commands.Where(c => !c.Key.EndsWith("-receiver", StringComparison.Ordinal)))
        Console.Error.WriteLine($"  {name,-10} {help}");
    return 2;
}
return command.Run(args[1..]);
