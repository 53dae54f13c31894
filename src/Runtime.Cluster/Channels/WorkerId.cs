using System.Globalization;

namespace Runtime.Cluster.Channels;

/// <summary>
/// One worker of a run: data-parallel replica <see cref="Data"/>, pipeline stage <see cref="Stage"/>, tensor-parallel
/// rank <see cref="Tensor"/>. Printed as <c>run/d.p.t</c>, the worker entity's name.
/// </summary>
public sealed record WorkerId
{
    public WorkerId(string run, int data, int stage, int tensor)
    {
        ArgumentException.ThrowIfNullOrEmpty(run);
        if (data < 0 || stage < 0 || tensor < 0)
            throw new ArgumentOutOfRangeException(nameof(data), $"worker coordinates must be >= 0, got {data}.{stage}.{tensor}");
        Run = run;
        Data = data;
        Stage = stage;
        Tensor = tensor;
    }

    public string Run { get; }
    public int Data { get; }
    public int Stage { get; }
    public int Tensor { get; }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Run}/{Data}.{Stage}.{Tensor}");
}
