namespace Runtime.Model.Lora;

/// <summary>
/// A LoRA adapter's hyper-parameters as PEFT's LoraConfig names them: rank <c>r</c>, <c>lora_alpha</c>,
/// <c>lora_dropout</c>, <c>target_modules</c> (leaf names of Llama's seven projections) and <c>use_rslora</c>.
/// Targets are kept in Llama's module order (q, k, v, o, gate, up, down) whatever order they were given in.
/// </summary>
public sealed record LoraConfig
{
    /// <summary>The seven projections of a Llama decoder layer, in module order.</summary>
    public static IReadOnlyList<string> AllTargets { get; } =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public LoraConfig(int rank, double alpha, double dropout, IEnumerable<string> targets, bool useRslora = false)
    {
        Rank = rank;
        Alpha = alpha;
        Dropout = dropout;
        var given = targets.ToList();
        var unknown = given.Where(t => !AllTargets.Contains(t)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"unknown LoRA target(s) {string.Join(", ", unknown.Select(u => $"'{u}'"))}; Llama's projections are {string.Join(", ", AllTargets)}");
        Targets = AllTargets.Where(given.Contains).ToArray();
        UseRslora = useRslora;
        Validate();
    }

    /// <summary>PEFT's <c>r</c>.</summary>
    public int Rank { get; }

    /// <summary>PEFT's <c>lora_alpha</c>.</summary>
    public double Alpha { get; }

    /// <summary>PEFT's <c>lora_dropout</c>: the probability of zeroing an element of the adapter's input while training.</summary>
    public double Dropout { get; }

    /// <summary>PEFT's <c>target_modules</c>, in module order.</summary>
    public IReadOnlyList<string> Targets { get; }

    /// <summary>PEFT's <c>use_rslora</c>: scale by alpha / sqrt(r) instead of alpha / r.</summary>
    public bool UseRslora { get; }

    /// <summary>The factor on the adapter's output: alpha / r, or alpha / sqrt(r) with rsLoRA (as PEFT computes it, in double).</summary>
    public double Scaling => UseRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>Where a target lives inside a decoder layer: "self_attn.q_proj", "mlp.gate_proj", ...</summary>
    public static string ModuleInLayer(string target) => target switch
    {
        "q_proj" or "k_proj" or "v_proj" or "o_proj" => "self_attn." + target,
        "gate_proj" or "up_proj" or "down_proj" => "mlp." + target,
        _ => throw new ArgumentException($"'{target}' is not a Llama projection ({string.Join(", ", AllTargets)})"),
    };

    /// <summary>The canonical module paths this config adapts in one layer, e.g. "model.layers.3.self_attn.q_proj".</summary>
    public IEnumerable<string> ModulePaths(int layer) =>
        Targets.Select(t => $"model.layers.{layer}.{ModuleInLayer(t)}");

    void Validate()
    {
        if (Rank <= 0) throw new ArgumentException($"LoRA rank r must be positive (got {Rank})");
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) throw new ArgumentException($"lora_alpha must be a positive number (got {Alpha})");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"lora_dropout must be in [0, 1) (got {Dropout})");
        if (Targets.Count == 0) throw new ArgumentException("LoRA needs at least one target module");
    }

    public bool Equals(LoraConfig? other) =>
        other is not null && Rank == other.Rank && Alpha == other.Alpha && Dropout == other.Dropout
        && UseRslora == other.UseRslora && Targets.SequenceEqual(other.Targets);

    public override int GetHashCode() => HashCode.Combine(Rank, Alpha, Dropout, UseRslora, string.Join(",", Targets));

    public override string ToString() =>
        $"LoRA r={Rank} alpha={Alpha} dropout={Dropout}{(UseRslora ? " rslora" : "")} targets={string.Join(",", Targets)}";
}
