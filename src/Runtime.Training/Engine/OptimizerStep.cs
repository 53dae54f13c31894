using Runtime.Training.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Engine;

/// <summary>Clipping and AdamW settings of <see cref="OptimizerStep"/>.</summary>
public sealed record OptimizerStepOptions
{
    public AdamWOptions AdamW { get; init; } = new();

    /// <summary>Global-norm clipping threshold (Hugging Face's max_grad_norm, 1.0); null: no clipping, the norm is still reported.</summary>
    public double? MaxGradNorm { get; init; } = 1.0;
}

/// <summary>One optimizer update: its number (1-based), the global gradient norm before clipping, the lr it used, the clip factor.</summary>
public readonly record struct OptimizerStepResult(long Step, double GradNorm, double LearningRate, double ClipCoefficient);

/// <summary>
/// The update of one worker's trainable parameters at the end of a training step: gradient clipping by the global norm
/// (the squared norm summed over workers by a hook the caller supplies; the local norm alone by default), the AdamW
/// update with the schedule's learning rate, and clearing the gradients.
/// <para>
/// Parameters in fp32 (LoRA adapters, fp32 full fine-tuning) are updated in place. Low-precision ones (bf16 full
/// fine-tuning) get fp32 master copies (<see cref="MasterWeights"/>): call <see cref="AccumulateGradients"/> after each
/// micro-batch's backward so the gradients accumulate in fp32, the optimizer updates the masters, and the bf16 weights
/// are rounded from them after every step. <see cref="Parameters"/> are the fp32 tensors the optimizer owns: their
/// gradients are what a data-parallel all-reduce sums, and their values are what a checkpoint saves.
/// </para>
/// </summary>
public sealed class OptimizerStep : IDisposable
{
    readonly IReadOnlyList<(string Name, Tensor Parameter)> _model;
    readonly MasterWeights? _masters;
    readonly AdamW _adamw;
    bool _disposed;

    public OptimizerStep(IEnumerable<(string Name, Tensor Parameter)> trainable, LrSchedule schedule, OptimizerStepOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(trainable);
        ArgumentNullException.ThrowIfNull(schedule);
        Options = options ?? new OptimizerStepOptions();
        if (Options.MaxGradNorm is { } max && (!(max > 0) || double.IsInfinity(max)))
            throw new ArgumentOutOfRangeException(nameof(options), max, "max_grad_norm must be finite and > 0 (or null for no clipping)");
        Schedule = schedule;
        _model = trainable.ToList();
        if (_model.Count == 0) throw new ArgumentException("there are no trainable parameters (none requires grad)", nameof(trainable));

        var lowPrecision = _model.Where(p => p.Parameter.dtype is not (ScalarType.Float32 or ScalarType.Float64)).ToList();
        if (lowPrecision.Count > 0) _masters = new MasterWeights(lowPrecision);
        var masterByName = _masters?.Parameters.ToDictionary(m => m.Name, m => m.Parameter) ?? [];
        Parameters = _model.Select(p => (p.Name, masterByName.GetValueOrDefault(p.Name, p.Parameter))).ToList();
        try
        {
            _adamw = new AdamW(Parameters, Options.AdamW);
        }
        catch
        {
            _masters?.Dispose();
            throw;
        }
    }

    public OptimizerStepOptions Options { get; }

    public LrSchedule Schedule { get; }

    /// <summary>Updates done so far; the next <see cref="Step"/> uses <c>Schedule.LearningRate(StepCount)</c>.</summary>
    public long StepCount => _adamw.StepCount;

    /// <summary>The fp32 tensors the optimizer updates (masters of bf16 weights, else the weights), by canonical name.</summary>
    public IReadOnlyList<(string Name, Tensor Parameter)> Parameters { get; }

    /// <summary>
    /// Bytes of the optimizer's own state: AdamW's two moments per parameter and, with bf16 weights, the fp32 masters
    /// (the planner's "optimizer" category; gradients are counted separately).
    /// </summary>
    public long StateBytes => _adamw.StateBytes + (_masters?.Bytes ?? 0);

    /// <summary>Whether bf16 weights train through fp32 masters.</summary>
    public bool UsesMasterWeights => _masters is not null;

    /// <summary>Moves low-precision gradients into the fp32 masters; call after each micro-batch's backward (nothing to do in fp32).</summary>
    public void AccumulateGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _masters?.AccumulateGradients();
    }

    /// <summary>This worker's share of the squared gradient norm (summed over workers, its root is the global norm).</summary>
    public double LocalSquaredGradNorm()
    {
        AccumulateGradients();
        return GradientClipper.ComputeLocalSquaredNorm(Parameters.Select(p => p.Parameter));
    }

    /// <summary>
    /// Clips (when <see cref="OptimizerStepOptions.MaxGradNorm"/> is set) by the global norm, the square root of
    /// <paramref name="sumSquaredNormAcrossWorkers"/> applied to this worker's squared norm (identity by default: one
    /// worker), updates the parameters with the schedule's learning rate, and clears every gradient.
    /// </summary>
    public OptimizerStepResult Step(Func<double, double>? sumSquaredNormAcrossWorkers = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        AccumulateGradients();
        var tensors = Parameters.Select(p => p.Parameter).ToList();
        ClipResult clip;
        if (Options.MaxGradNorm is { } maxNorm)
        {
            clip = GradientClipper.ClipByGlobalNorm(tensors, maxNorm, sumSquaredNormAcrossWorkers);
        }
        else
        {
            double squared = GradientClipper.ComputeLocalSquaredNorm(tensors);
            clip = new ClipResult(Math.Sqrt(sumSquaredNormAcrossWorkers?.Invoke(squared) ?? squared), 1.0);
        }
        double learningRate = _adamw.Step(Schedule);
        _masters?.CopyToModel();
        ZeroGrad();
        return new OptimizerStepResult(StepCount, clip.TotalNorm, learningRate, clip.Coefficient);
    }

    /// <summary>Drops every gradient, of the optimized tensors and of the model's weights (an aborted step).</summary>
    public void ZeroGrad()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _adamw.ZeroGrad();
        _masters?.ZeroGrad();
        foreach (var (_, parameter) in _model) parameter.grad = null;
    }

    /// <summary>
    /// AdamW's moments by "&lt;name&gt;.exp_avg" / "&lt;name&gt;.exp_avg_sq" (copies the caller disposes); the update count
    /// is <see cref="StepCount"/>, which a checkpoint keeps with the run's state rather than in every worker's shard.
    /// </summary>
    public Dictionary<string, Tensor> ExportOptimizerState()
    {
        var state = _adamw.ExportState();
        state.Remove(AdamW.StepKey, out var step);
        step?.Dispose();
        return state;
    }

    /// <summary>Loads the moments (as <see cref="ExportOptimizerState"/> names them) and the update count.</summary>
    public void ImportOptimizerState(IReadOnlyDictionary<string, Tensor> moments, long stepCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(stepCount);
        using var scope = torch.NewDisposeScope();
        var state = new Dictionary<string, Tensor>(moments, StringComparer.Ordinal) { [AdamW.StepKey] = torch.tensor(stepCount) };
        _adamw.ImportState(state);
    }

    /// <summary>
    /// Sets the trainable values (fp32, by canonical name, each of its parameter's shape) and rounds them into the
    /// low-precision weights: the inverse of reading <see cref="Parameters"/>. All names are checked before any is set.
    /// </summary>
    public void ImportParameters(IReadOnlyDictionary<string, Tensor> values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var problems = new List<string>();
        foreach (var (name, parameter) in Parameters)
        {
            if (!values.TryGetValue(name, out var value)) problems.Add($"'{name}' is missing");
            else if (!value.shape.SequenceEqual(parameter.shape))
                problems.Add($"'{name}' is [{string.Join(", ", value.shape)}], the parameter is [{string.Join(", ", parameter.shape)}]");
        }
        if (problems.Count > 0) throw new OptimizerStateException("cannot load trainable parameters: " + string.Join("; ", problems));

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (name, parameter) in Parameters) parameter.copy_(values[name]);
        _masters?.CopyToModel();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _adamw.Dispose();
        _masters?.Dispose();
    }
}
