using System.Text.Json.Nodes;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Tokenization;
using Runtime.Model.Tokenization;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// Pieces of a fine-tuning run on the tiny preset as a user would set it up: a model folder from `rt init` with the
/// real tokenizer, a chat dataset in a JSONL file, the data pipeline with the folder's chat template, a model loaded
/// from the folder (dense or 4-bit), adapters injected.
/// </summary>
internal static class TinyRun
{
    static readonly Lazy<Llama3Tokenizer> SharedTokenizer = new(() => Llama3Tokenizer.Load(TokenizerDownload.TokenizerJson));

    public static Llama3Tokenizer Tokenizer => SharedTokenizer.Value;

    /// <summary>`rt init --preset tiny` (fp32 unless asked) with the real tokenizer.</summary>
    public static string Init(string folder, long seed = 5, string dtype = "fp32", double initStd = 0.02)
    {
        var (exit, _, err) = Rt.Invoke("init", "--preset", "tiny", "--out", folder, "--seed", seed.ToString(), "--dtype", dtype,
            "--init-std", initStd.ToString(System.Globalization.CultureInfo.InvariantCulture), "--tokenizer", TokenizerDownload.TokenizerJson);
        if (exit != 0) throw new InvalidOperationException(err);
        return folder;
    }

    /// <summary>
    /// 32 short questions, each with its own three-digit code: "Code of Alice?" -> "417". Names and codes are distinct
    /// single tokens (the tokenizer keeps up to three digits together), so the only way to answer is to have learned each
    /// pair.
    /// </summary>
    public static IReadOnlyList<(string Question, string Answer)> Pairs { get; } = BuildPairs();

    static IReadOnlyList<(string, string)> BuildPairs()
    {
        string[] names = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Louis",
            "Maria", "Nathan", "Olivia", "Peter", "Quinn", "Rachel", "Simon", "Tina", "Ursula", "Victor", "Wendy", "Xavier",
            "Yvonne", "Zach", "Anna", "Brian", "Clara", "Derek", "Elena", "Felix"];
        return names.Select((n, i) => ($"Code of {n}?", (101 + (i * 277) % 899).ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList();
    }

    /// <summary>The pairs as {"messages": [user, assistant]} rows.</summary>
    public static string WriteChat(string path, IEnumerable<(string Question, string Answer)> pairs)
    {
        var lines = pairs.Select(p => new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = p.Question },
                new JsonObject { ["role"] = "assistant", ["content"] = p.Answer }),
        }.ToJsonString());
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>The data pipeline with the model folder's chat template.</summary>
    public static TrainingData OpenData(string dataPath, string modelFolder, int maxSeqLength, bool packing, ulong samplerSeed = 3) =>
        TrainingData.Open(dataPath, Tokenizer, new TrainingDataOptions(
            new DataOptions(maxSeqLength) { Template = ChatTemplate.FromModelFolder(modelFolder) }, new SamplerOptions(samplerSeed))
        {
            Packing = packing,
        });

    /// <summary>The model from its folder, for training: dense in <paramref name="dtype"/>, or NF4 projections (QLoRA, bf16).</summary>
    public static LlamaSlice Load(string modelFolder, ScalarType dtype = ScalarType.Float32, bool nf4 = false, bool requiresGrad = true)
    {
        using var source = new HfModelFolder(modelFolder);
        return LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions
        {
            DType = dtype, RequiresGrad = requiresGrad, ProjectionBase = nf4 ? ProjectionBase.Nf4 : ProjectionBase.Dense,
        });
    }

    /// <summary>The model with fresh adapters (base frozen).</summary>
    public static LlamaSlice LoadWithLora(string modelFolder, LoraConfig lora, long seed, ScalarType dtype = ScalarType.Float32, bool nf4 = false)
    {
        var slice = Load(modelFolder, dtype, nf4);
        LoraInjector.Inject(slice, lora, seed);
        return slice;
    }

    public static LoraConfig Lora(double dropout = 0) => new(8, 16, dropout, LoraConfig.AllTargets);

    /// <summary>Raw bits of a tensor, for bitwise comparisons.</summary>
    public static byte[] Bits(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().contiguous().bytes.ToArray();
    }
}
