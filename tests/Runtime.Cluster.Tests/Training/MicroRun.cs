using System.Text;
using Runtime.Cluster.RunSpecs;
using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.Tokenization;
using Runtime.Model.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// A micro Llama written to a Hugging Face folder (vocab 256, hidden 32, 4 layers, 4 query heads over 2 key/value
/// heads; LlamaInitializer's values, std 0.1 so gradients are far from trivial; the real Llama 3 tokenizer beside it,
/// which the run tokenizes its data with) and pre-tokenized data: 64 rows of exactly 16 ids, so the collator never
/// pads (the Llama 3 pad id does not exist in a 256-token vocabulary). Each row follows a stride pattern a model can
/// learn.
/// </summary>
public sealed class MicroRun
{
    public const int Rows = 64;
    public const int RowLength = 16;
    public const long Seed = 7;

    public MicroRun(string folder)
    {
        Folder = folder;
        Directory.CreateDirectory(folder);
        Model = WriteModel(Path.Combine(folder, "model"), Config);
        Data = WriteData(Path.Combine(folder, "data", "rows.jsonl"));
    }

    public string Folder { get; }

    public string Model { get; }

    public string Data { get; }

    public static LlamaConfig Config { get; } = new()
    {
        VocabSize = 256, HiddenSize = 32, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 8,
        IntermediateSize = 64, RmsNormEps = 1e-5, RopeTheta = 10000, MaxPositionEmbeddings = 256, TieWordEmbeddings = false,
        BosTokenId = 1, EosTokenIds = [2], TorchDtype = "float32",
    };

    internal static string WriteModel(string folder, LlamaConfig config)
    {
        var init = new LlamaInitializer(11, std: 0.1);
        var entries = LlamaTensorNames.All(config)
            .Select(t => new TensorEntry(t.Name, ScalarType.Float32, t.Shape, () => init.Create(t.Name, t.Shape)))
            .ToList();
        HfModelWriter.Write(folder, entries);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
        Llama3Tokenizer.CopyFiles(TokenizerDownload.ModelsFolder, folder);
        return folder;
    }

    static string WriteData(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var random = new Random(5);
        var lines = new StringBuilder();
        for (int r = 0; r < Rows; r++)
        {
            int stride = 1 + random.Next(3), start = 1 + random.Next(255);
            var ids = Enumerable.Range(0, RowLength).Select(i => 1 + (start - 1 + i * stride) % 255);
            lines.Append("{\"input_ids\": [").Append(string.Join(", ", ids)).Append("]}\n");
        }
        File.WriteAllText(path, lines.ToString());
        return path;
    }

    /// <summary>
    /// A LoRA spec over the micro model: r 4 on every projection, dropout 0, fp32, 6 steps of 8 samples (micro-batch 2
    /// x accumulation 4 / dp), linear schedule from lr 1e-2, weight decay 0.01, clipping at 1.0, checkpoints every 3
    /// steps. <paramref name="sets"/> override keys as `rt` would (e.g. "parallel.data=2").
    /// </summary>
    public RunSpec Spec(string name, params string[] sets)
    {
        var text = $$"""
            run {
              name = "{{name}}"
              model = {{HoconQuote(Model)}}
              method = lora
              lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
              data { path = {{HoconQuote(Data)}}, max-seq-length = {{RowLength}}, packing = off }
              train { micro-batch-size = 2, grad-accum = 4, epochs = 1, max-steps = 6, lr = 1e-2, schedule = linear,
                      warmup-ratio = 0.0, weight-decay = 0.01, max-grad-norm = 1.0, precision = fp32,
                      grad-checkpointing = off, seed = {{Seed}} }
              parallel { data = 1, pipeline = 1, tensor = 1, schedule = 1f1b }
              checkpoint { every-steps = 3, keep = 2 }
              log { every-steps = 1, tensorboard = off }
              output = {{HoconQuote(Path.Combine(Folder, "runs", name))}}
            }
            """;
        return RunSpecParser.Parse(text, name + ".conf", Folder, sets);
    }

    /// <summary>The spec for a data-parallel degree, keeping the global batch at 8 (accumulation 4 / dp).</summary>
    public RunSpec Spec(string name, int data, int pipeline, string schedule = "1f1b", params string[] more) =>
        Spec(name, [$"parallel.data={data}", $"parallel.pipeline={pipeline}", $"train.grad-accum={4 / data}", $"parallel.schedule={schedule}", .. more]);

    static string HoconQuote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

    /// <summary>The adapter tensors of a PEFT folder, by canonical name, as fp64 arrays.</summary>
    public static Dictionary<string, double[]> Adapter(string folder)
    {
        using var adapter = PeftAdapter.Load(folder);
        return adapter.Tensors.ToDictionary(t => t.Key, t => Values(t.Value));
    }

    public static double[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>max |a - e| / max(1e-3, max |e|) over every tensor: the relative difference of two adapters.</summary>
    public static double RelativeDifference(IReadOnlyDictionary<string, double[]> expected, IReadOnlyDictionary<string, double[]> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        double worst = 0;
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.Equal(e.Length, a.Length);
            double scale = Math.Max(1e-3, e.Max(Math.Abs));
            for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - e[i]) / scale);
        }
        return worst;
    }
}
