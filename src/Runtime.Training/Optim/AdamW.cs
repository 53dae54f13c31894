using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Training.Optim;

/// <summary>
/// AdamW over one worker's trainable parameters, computing exactly what PyTorch's single-tensor
/// <c>torch.optim.AdamW</c> computes (the CPU default), operation for operation:
/// <code>
/// t += 1
/// p.mul_(1 - lr * weight_decay)                          # decoupled decay, decay group only
/// exp_avg.lerp_(grad, 1 - beta1)
/// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
/// step_size = lr / (1 - beta1 ** t)
/// denom = (exp_avg_sq.sqrt() / (1 - beta2 ** t) ** 0.5).add_(eps)
/// p.addcdiv_(exp_avg, denom, value=-step_size)           # = p - lr * m_hat / (sqrt(v_hat) + eps)
/// </code>
/// The scalars are computed in double as Python does and the tensor ops are the same libtorch kernels, so the result is
/// bitwise repeatable on a machine and agrees with PyTorch's to the last bits: against PyTorch 2.11 on another CPU
/// the moments were bitwise equal and ~1% of the weights differed by 1-4 ulps, because libtorch's vectorised float
/// sqrt is not correctly rounded and rounds differently on AVX2 and AVX-512 code paths.
/// </summary>
/// <remarks>
/// Parameters are named by their canonical full-model names; a worker holding a pipeline stage or a tensor-parallel
/// slice passes just the tensors it owns. Nothing here needs the other workers: global quantities (gradient norm,
/// token counts) are applied to the gradients before <see cref="Step(double)"/>.
/// Parameters and state are fp32 (fp64 is accepted for reference computations). bf16 weights train through
/// <see cref="MasterWeights"/>, whose fp32 masters are what this optimizer updates.
/// Unlike PyTorch, which keeps a step count per parameter and skips a parameter whose gradient is None, the step count
/// here is one per optimizer, so every parameter must have a gradient at every step (it is an error otherwise).
/// </remarks>
public sealed partial class AdamW : IDisposable
{
    private sealed class Slot(string name, Tensor parameter, double weightDecay)
    {
        public string Name { get; } = name;
        public Tensor Parameter { get; } = parameter;
        public double WeightDecay { get; } = weightDecay;
        public Tensor ExpAvg { get; } = ZerosLike(parameter);
        public Tensor ExpAvgSq { get; } = ZerosLike(parameter);

        // State outlives whatever dispose scope the caller constructs the optimizer in.
        private static Tensor ZerosLike(Tensor parameter)
        {
            using var noGrad = torch.no_grad();
            return torch.zeros_like(parameter).DetachFromDisposeScope();
        }
    }

    private readonly List<Slot> _slots = [];
    private readonly Dictionary<string, Slot> _byName = new(StringComparer.Ordinal);
    private bool _disposed;

    public AdamW(IEnumerable<(string Name, Tensor Parameter)> parameters, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Options = options ?? new AdamWOptions();
        Options.Validate();
        foreach (var (name, parameter) in parameters)
        {
            if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a parameter has an empty name", nameof(parameters));
            ArgumentNullException.ThrowIfNull(parameter, $"parameter '{name}'");
            if (_byName.ContainsKey(name)) throw new ArgumentException($"parameter '{name}' is given twice", nameof(parameters));
            if (parameter.dtype is not (ScalarType.Float32 or ScalarType.Float64))
                throw new ArgumentException(
                    $"parameter '{name}' is {parameter.dtype}; AdamW keeps fp32 weights and state (train bf16 weights through MasterWeights)",
                    nameof(parameters));
            var slot = new Slot(name, parameter, Options.AppliesWeightDecay(name) ? Options.WeightDecay : 0.0);
            _slots.Add(slot);
            _byName.Add(name, slot);
        }
    }

    public AdamWOptions Options { get; }

    /// <summary>
    /// Updates done so far (PyTorch's <c>state["step"]</c>). The next <see cref="Step(double)"/> is update number
    /// <c>StepCount + 1</c> and uses that number for the bias corrections.
    /// </summary>
    public long StepCount { get; private set; }

    public IReadOnlyList<string> ParameterNames => _slots.Select(s => s.Name).ToList();

    /// <summary>Bytes of the moments (exp_avg and exp_avg_sq of every parameter), allocated when the optimizer is built.</summary>
    public long StateBytes => _slots.Sum(s => s.ExpAvg.NumberOfElements * s.ExpAvg.ElementSize + s.ExpAvgSq.NumberOfElements * s.ExpAvgSq.ElementSize);

    /// <summary>The decay group, in the order the parameters were given.</summary>
    public IReadOnlyList<string> DecayedParameterNames => _slots.Where(s => s.WeightDecay != 0).Select(s => s.Name).ToList();

    /// <summary>The no-decay group (norm weights, biases under the default rule).</summary>
    public IReadOnlyList<string> UndecayedParameterNames => _slots.Where(s => s.WeightDecay == 0).Select(s => s.Name).ToList();

    /// <summary>The weight decay applied to a parameter: <see cref="AdamWOptions.WeightDecay"/> or 0.</summary>
    public double WeightDecayOf(string parameterName) => SlotOf(parameterName).WeightDecay;

    /// <summary>
    /// One update of every parameter from its <c>.grad</c>, with this learning rate (the schedule's value for
    /// <see cref="StepCount"/>; see <see cref="Step(LrSchedule)"/>). Checks every gradient before changing anything.
    /// </summary>
    public void Step(double learningRate)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!(learningRate >= 0) || double.IsInfinity(learningRate))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "the learning rate must be finite and >= 0");

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var grads = GradientsOrThrow();

        long t = StepCount + 1;
        double beta1 = Options.Beta1, beta2 = Options.Beta2, eps = Options.Eps;
        double biasCorrection1 = 1 - Math.Pow(beta1, t);
        double biasCorrection2 = 1 - Math.Pow(beta2, t);
        double stepSize = learningRate / biasCorrection1;
        double biasCorrection2Sqrt = Math.Pow(biasCorrection2, 0.5); // Python's `** 0.5`, not math.sqrt

        for (int i = 0; i < _slots.Count; i++)
        {
            // One scope per parameter frees its temporary (denom, the size of the parameter) before the next one.
            using var perParameter = torch.NewDisposeScope();
            var slot = _slots[i];
            var p = slot.Parameter;
            var grad = grads[i];
            if (slot.WeightDecay != 0) p.mul_(1 - learningRate * slot.WeightDecay);
            slot.ExpAvg.lerp_(grad, 1 - beta1);
            slot.ExpAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
            var denom = slot.ExpAvgSq.sqrt().div_(biasCorrection2Sqrt).add_(eps);
            p.addcdiv_(slot.ExpAvg, denom, -stepSize);
        }
        StepCount = t;
    }

    /// <summary>
    /// One update with the schedule's learning rate for this update: update number <c>StepCount + 1</c> (1-based)
    /// uses <c>schedule.LearningRate(StepCount)</c>, as Hugging Face's loop (optimizer.step, then scheduler.step) does.
    /// With warmup the first update therefore runs at lr 0: the moments move, the weights do not.
    /// </summary>
    public double Step(LrSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        double learningRate = schedule.LearningRate(StepCount);
        Step(learningRate);
        return learningRate;
    }

    /// <summary>Drops every parameter's gradient (PyTorch's <c>zero_grad(set_to_none=True)</c>).</summary>
    public void ZeroGrad()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var slot in _slots) slot.Parameter.grad = null;
    }

    private Tensor[] GradientsOrThrow()
    {
        var grads = new Tensor[_slots.Count];
        var problems = new List<string>();
        for (int i = 0; i < _slots.Count; i++)
        {
            var slot = _slots[i];
            var grad = slot.Parameter.grad;
            if (grad is null)
                problems.Add($"'{slot.Name}' has no gradient");
            else if (grad.dtype != slot.Parameter.dtype || !grad.shape.SequenceEqual(slot.Parameter.shape))
                problems.Add($"'{slot.Name}' has a {grad.dtype} gradient of shape {Shape(grad.shape)} for a {slot.Parameter.dtype} parameter of shape {Shape(slot.Parameter.shape)}");
            grads[i] = grad!;
        }
        if (problems.Count > 0)
            throw new OptimizerStateException(
                "AdamW step " + (StepCount + 1) + ": " + Summarize(problems) +
                " (the step count is shared by all parameters, so each needs a gradient of its own dtype and shape at every step)");
        return grads;
    }

    private Slot SlotOf(string name) =>
        _byName.TryGetValue(name, out var slot) ? slot : throw new KeyNotFoundException($"AdamW has no parameter '{name}'");

    internal static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";

    internal static string Summarize(List<string> problems, int shown = 8) =>
        string.Join("; ", problems.Take(shown)) + (problems.Count > shown ? $"; and {problems.Count - shown} more" : "");

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var slot in _slots)
        {
            slot.ExpAvg.Dispose();
            slot.ExpAvgSq.Dispose();
        }
    }
}
