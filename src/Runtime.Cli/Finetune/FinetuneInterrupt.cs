namespace Runtime.Cli.Finetune;

/// <summary>
/// How `rt finetune` is told to stop: <see cref="Stop"/> (the first Ctrl+C or SIGTERM) lets the step in flight finish,
/// checkpoints it and stops the run; <see cref="StopNow"/> (a second one) stops it at once, at its last committed
/// checkpoint. Tests cancel the tokens themselves.
/// </summary>
public sealed record FinetuneInterrupt(CancellationToken Stop, CancellationToken StopNow)
{
    public static FinetuneInterrupt None { get; } = new(CancellationToken.None, CancellationToken.None);
}
