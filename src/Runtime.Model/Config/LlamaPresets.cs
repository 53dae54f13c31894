namespace Runtime.Model.Config;

/// <summary>
/// Architectures by name: the published Llama 3.1/3.2 models (for planning) and Runtime's own small random-init
/// presets (tiny: tests in seconds; small: ~174M parameters for benchmarks). Both of Runtime's presets keep the real
/// 128,256-token vocabulary so the real Llama 3 tokenizer and chat template apply to them.
/// </summary>
public static class LlamaPresets
{
    static readonly RopeScaling Llama31Rope = new(8.0, 1.0, 4.0, 8192);
    static readonly RopeScaling Llama32Rope = new(32.0, 1.0, 4.0, 8192);
    static readonly int[] InstructEos = [128001, 128008, 128009];

    public static LlamaConfig Tiny => new()
    {
        HiddenSize = 64, IntermediateSize = 192, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 16, VocabSize = 128256, MaxPositionEmbeddings = 8192, RopeScaling = Llama31Rope,
        TieWordEmbeddings = true, EosTokenIds = InstructEos, TorchDtype = "float32",
    };

    public static LlamaConfig Small => new()
    {
        HiddenSize = 768, IntermediateSize = 2048, NumHiddenLayers = 12, NumAttentionHeads = 12, NumKeyValueHeads = 4,
        HeadDim = 64, VocabSize = 128256, MaxPositionEmbeddings = 8192, RopeScaling = Llama32Rope,
        TieWordEmbeddings = true, EosTokenIds = InstructEos, TorchDtype = "bfloat16",
    };

    public static LlamaConfig Llama31_8B => Llama31(4096, 14336, 32, 32);
    public static LlamaConfig Llama31_70B => Llama31(8192, 28672, 80, 64);
    public static LlamaConfig Llama31_405B => Llama31(16384, 53248, 126, 128);

    public static LlamaConfig Llama32_1B => new()
    {
        HiddenSize = 2048, IntermediateSize = 8192, NumHiddenLayers = 16, NumAttentionHeads = 32, NumKeyValueHeads = 8,
        HeadDim = 64, VocabSize = 128256, RopeScaling = Llama32Rope, TieWordEmbeddings = true, EosTokenIds = InstructEos,
    };

    public static LlamaConfig Llama32_3B => new()
    {
        HiddenSize = 3072, IntermediateSize = 8192, NumHiddenLayers = 28, NumAttentionHeads = 24, NumKeyValueHeads = 8,
        HeadDim = 128, VocabSize = 128256, RopeScaling = Llama32Rope, TieWordEmbeddings = true, EosTokenIds = InstructEos,
    };

    static LlamaConfig Llama31(int hidden, int intermediate, int layers, int heads) => new()
    {
        HiddenSize = hidden, IntermediateSize = intermediate, NumHiddenLayers = layers, NumAttentionHeads = heads,
        NumKeyValueHeads = 8, HeadDim = 128, VocabSize = 128256, RopeScaling = Llama31Rope, EosTokenIds = InstructEos,
    };

    public static IReadOnlyDictionary<string, LlamaConfig> ByName { get; } = new Dictionary<string, LlamaConfig>
    {
        ["tiny"] = Tiny,
        ["small"] = Small,
        ["llama3.2-1b"] = Llama32_1B,
        ["llama3.2-3b"] = Llama32_3B,
        ["llama3.1-8b"] = Llama31_8B,
        ["llama3.1-70b"] = Llama31_70B,
        ["llama3.1-405b"] = Llama31_405B,
    };

    public static LlamaConfig Get(string name) =>
        ByName.TryGetValue(name, out var c)
            ? c
            : throw new ModelConfigException($"unknown model preset '{name}' (known: {string.Join(", ", ByName.Keys)})");
}
