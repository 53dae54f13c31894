using Runtime.Model.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Runtime.Model.Lora;

/// <summary>
/// Puts LoRA adapters into a slice and reads them back out. A slice adapts only its own layers; every name is the
/// canonical full-model one ("model.layers.3.self_attn.q_proj.lora_A.weight"), so the adapters of all workers together
/// are the adapter of the whole model.
/// </summary>
public static class LoraInjector
{
    /// <summary>
    /// Adds fresh adapters to the targets of every layer the slice holds, initialised as PEFT does (A uniform in
    /// ±1/sqrt(in), B zero; see <see cref="LoraInitializer"/>), and freezes every other parameter: the slice's trainable
    /// parameters are then exactly its adapters (LoRA over a dense base, or QLoRA over an NF4 one).
    /// A tensor-parallel shard gets its parts of the whole model's adapters (see <see cref="Projection"/>): A is drawn
    /// over the full input width, and a row-parallel projection keeps its columns of it.
    /// </summary>
    public static void Inject(LlamaSlice slice, LoraConfig config, long seed)
    {
        var initializer = new LoraInitializer(seed);
        foreach (var (_, projection) in Targets(slice, config))
        {
            var a = initializer.CreateA(projection.ModulePath + ".lora_A.weight", config.Rank, projection.FullInFeatures,
                projection.LoraASlice);
            var b = LoraInitializer.CreateB(projection.OutFeatures, config.Rank);
            projection.AttachLora(a, b, config.Scaling, config.Dropout, trainable: true);
        }
        FreezeBase(slice);
    }

    /// <summary>Stops gradients for every parameter of the slice that is not a LoRA matrix.</summary>
    public static void FreezeBase(LlamaSlice slice)
    {
        foreach (var (name, parameter) in slice.named_parameters())
            if (!IsAdapterParameter(name))
                parameter.requires_grad_(false);
    }

    /// <summary>The parameters that require gradients, under their canonical names, in module order.</summary>
    public static IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters(LlamaSlice slice) =>
        slice.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();

    /// <summary>
    /// The slice's adapter matrices under their canonical names (the live parameters, not copies), in module order:
    /// what <see cref="PeftAdapter.Save"/> takes. A tensor-parallel shard's are its parts
    /// (<see cref="TensorParallel.TensorParallelPlacements"/>): join them (a checkpoint's reader does) before saving.
    /// </summary>
    public static IReadOnlyList<(string Name, Tensor Tensor)> AdapterTensors(LlamaSlice slice) =>
        slice.named_parameters().Where(p => IsAdapterParameter(p.name)).Select(p => (p.name, (Tensor)p.parameter)).ToList();

    /// <summary>Whether a canonical parameter name is a LoRA matrix ("....lora_A.weight" or "....lora_B.weight").</summary>
    public static bool IsAdapterParameter(string name) =>
        name.EndsWith(".lora_A.weight", StringComparison.Ordinal) || name.EndsWith(".lora_B.weight", StringComparison.Ordinal);

    /// <summary>The projections of the slice's layers that <paramref name="config"/> targets, with their layer index.</summary>
    public static IEnumerable<(int Layer, Projection Projection)> Targets(LlamaSlice slice, LoraConfig config) =>
        from layer in slice.Model.Layers
        from target in config.Targets
        select (layer.LayerIndex, ProjectionOf(layer, target));

    /// <summary>The projection of a layer by its leaf name (q_proj ... down_proj).</summary>
    public static Projection ProjectionOf(LlamaDecoderLayer layer, string target) => target switch
    {
        "q_proj" => layer.SelfAttention.QProj,
        "k_proj" => layer.SelfAttention.KProj,
        "v_proj" => layer.SelfAttention.VProj,
        "o_proj" => layer.SelfAttention.OProj,
        "gate_proj" => layer.Mlp.GateProj,
        "up_proj" => layer.Mlp.UpProj,
        "down_proj" => layer.Mlp.DownProj,
        _ => throw new ArgumentException($"'{target}' is not a Llama projection ({string.Join(", ", LoraConfig.AllTargets)})"),
    };
}
