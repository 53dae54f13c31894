using Runtime.Bench;

// Benchmarks as commands: `dotnet run --project tests/Runtime.Bench -c Release -- <command> [options]`.
var commands = new Dictionary<string, (string Help, Func<string[], int> Run)>(StringComparer.Ordinal)
{
    ["forward"] = ("forward tokens/s of a preset per dtype vs the same dtype's matmul GFLOP/s (MFU)", ForwardBench.Run),
    ["train"] = ("LoRA / QLoRA / full training tokens/s per dtype vs the same dtype's matmul GFLOP/s (MFU); memory by category vs rt plan", TrainBench.Run),
    ["linear-kernels"] = ("GFLOP/s of a projection's forward and its two backward matmuls per dtype (what a training step keeps of the forward's speed)", LinearKernelBench.Run),
    ["channel"] = ("tensor channel throughput between two processes on 127.0.0.1 vs a raw TCP copy; in-process hand-over time", ChannelBench.Run),
    ["finetune-overhead"] = ("`rt finetune` with one worker (in-process node) vs the plain TrainingLoop on the same run: the actor runtime's overhead", FinetuneOverheadBench.Run),
    ["pipeline"] = ("a 2-stage pipeline over two `rt node` processes (1 thread each) vs one worker: 1F1B speedup against 2m/(m+1)", PipelineBench.Run),
    [ChannelBench.ReceiverCommand] = ("(internal) the receiving process that `channel` starts", ChannelBench.RunReceiver),
};

if (args.Length == 0 || !commands.TryGetValue(args[0], out var command))
{
    Console.Error.WriteLine(args.Length == 0 ? "no command given" : $"unknown command '{args[0]}'");
    Console.Error.WriteLine("usage: Runtime.Bench <command> [options]");
    foreach (var (name, (help, _)) in commands.Where(c => !c.Key.EndsWith("-receiver", StringComparison.Ordinal)))
        Console.Error.WriteLine($"  {name,-18} {help}");
    return 2;
}
// As `rt` does: freed tensor memory stays with the process (RT_MALLOC=default measures glibc's own behaviour).
Runtime.Training.Metrics.NativeHeap.KeepFreedMemory();
return command.Run(args[1..]);
