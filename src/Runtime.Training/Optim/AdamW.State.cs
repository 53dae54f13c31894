using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Optim;

public sealed partial class AdamW
{
    /// <summary>Name of the step count in exported state: an int64 scalar.</summary>
    public const string StepKey = "optimizer.step";

    /// <summary>Suffix of a parameter's first moment in exported state: <c>"&lt;parameter&gt;.exp_avg"</c>.</summary>
    public const string ExpAvgSuffix = ".exp_avg";

    /// <summary>Suffix of a parameter's second moment in exported state: <c>"&lt;parameter&gt;.exp_avg_sq"</c>.</summary>
    public const string ExpAvgSqSuffix = ".exp_avg_sq";

    /// <summary>
    /// The state as named tensors: <c>"&lt;parameter&gt;.exp_avg"</c> and <c>"&lt;parameter&gt;.exp_avg_sq"</c> for every
    /// parameter (its canonical name, so a checkpoint holds it under full-model names) and <see cref="StepKey"/>.
    /// The tensors are copies the caller owns and disposes, so a background writer can keep them while training goes on.
    /// </summary>
    public Dictionary<string, Tensor> ExportState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            [StepKey] = torch.tensor(StepCount, ScalarType.Int64),
        };
        foreach (var slot in _slots)
        {
            state[slot.Name + ExpAvgSuffix] = slot.ExpAvg.detach().clone();
            state[slot.Name + ExpAvgSqSuffix] = slot.ExpAvgSq.detach().clone();
        }
        foreach (var tensor in state.Values) tensor.MoveToOuterDisposeScope();
        return state;
    }

    /// <summary>
    /// Replaces the state with <paramref name="state"/> (as <see cref="ExportState"/> wrote it), copying the values, so
    /// the caller keeps ownership of its tensors. Every expected tensor must be present with the parameter's shape and
    /// dtype, and the step a non-negative integer scalar; other names are an error unless
    /// <paramref name="ignoreUnexpected"/> (for a state dictionary that covers more parameters than this worker owns).
    /// Everything is checked before anything is changed; all problems are reported together.
    /// </summary>
    public void ImportState(IReadOnlyDictionary<string, Tensor> state, bool ignoreUnexpected = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var problems = new List<string>();
        long step = ReadStep(state, problems);
        var expected = new HashSet<string>(StringComparer.Ordinal) { StepKey };
        foreach (var slot in _slots)
        {
            foreach (var (key, target) in new[] { (slot.Name + ExpAvgSuffix, slot.ExpAvg), (slot.Name + ExpAvgSqSuffix, slot.ExpAvgSq) })
            {
                expected.Add(key);
                if (!state.TryGetValue(key, out var source) || source is null)
                    problems.Add($"'{key}' is missing");
                else if (!source.shape.SequenceEqual(target.shape))
                    problems.Add($"'{key}' has shape {Shape(source.shape)}, parameter '{slot.Name}' has shape {Shape(target.shape)}");
                else if (source.dtype != target.dtype)
                    problems.Add($"'{key}' is {source.dtype}, expected {target.dtype}");
            }
        }
        if (!ignoreUnexpected)
            problems.AddRange(state.Keys.Where(k => !expected.Contains(k)).Order(StringComparer.Ordinal)
                .Select(k => $"'{k}' is not state of any parameter of this optimizer"));
        if (problems.Count > 0)
            throw new OptimizerStateException($"cannot load AdamW state ({_slots.Count} parameters): " + Summarize(problems));

        foreach (var slot in _slots)
        {
            slot.ExpAvg.copy_(state[slot.Name + ExpAvgSuffix]);
            slot.ExpAvgSq.copy_(state[slot.Name + ExpAvgSqSuffix]);
        }
        StepCount = step;
    }

    private static long ReadStep(IReadOnlyDictionary<string, Tensor> state, List<string> problems)
    {
        if (!state.TryGetValue(StepKey, out var tensor) || tensor is null)
        {
            problems.Add($"'{StepKey}' is missing");
            return 0;
        }
        if (tensor.numel() != 1)
        {
            problems.Add($"'{StepKey}' has shape {Shape(tensor.shape)}, expected a scalar");
            return 0;
        }
        // PyTorch keeps the step as a float tensor; accept that too as long as it holds a whole number.
        double value = tensor.dtype is ScalarType.Int64 or ScalarType.Int32
            ? tensor.to(ScalarType.Int64).item<long>()
            : tensor.to(ScalarType.Float64).item<double>();
        if (!(value >= 0) || value != Math.Floor(value) || value > long.MaxValue)
        {
            problems.Add($"'{StepKey}' is {value}, expected a whole number >= 0");
            return 0;
        }
        return (long)value;
    }
}
