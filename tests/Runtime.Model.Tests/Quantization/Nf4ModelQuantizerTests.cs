using Runtime.Model.Config;
using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Quantization;
using Runtime.Model.Tests.IO;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Quantization;

/// <summary>The size of an `rt quantize` folder: about 0.516 bytes per quantized parameter, as QLoRA's NF4 promises.</summary>
public sealed class Nf4ModelQuantizerTests
{
    [Fact]
    public void Quantized_projections_take_about_0_516_bytes_per_parameter()
    {
        // One layer with Llama-like widths, large enough that the fixed per-weight tables (1.3 KB each) hardly count.
        var config = new LlamaConfig
        {
            VocabSize = 128, HiddenSize = 1024, NumHiddenLayers = 1, NumAttentionHeads = 8, NumKeyValueHeads = 2,
            HeadDim = 128, IntermediateSize = 2048, TorchDtype = "bfloat16", BosTokenId = 1, EosTokenIds = [2],
        };
        using var folder = new TempFolder();
        var dense = Path.Combine(folder.Path, "dense");
        var initializer = new LlamaInitializer(1);
        HfModelWriter.Write(dense, LlamaTensorNames.All(config)
            .Select(t => new TensorEntry(t.Name, ScalarType.BFloat16, t.Shape, () => initializer.Create(t.Name, t.Shape, ScalarType.BFloat16)))
            .ToList());
        File.WriteAllText(Path.Combine(dense, "config.json"), config.ToJson());

        var result = Nf4ModelQuantizer.QuantizeFolder(dense, Path.Combine(folder.Path, "nf4"));
        Assert.Equal(config.LayerLinearParameters, result.QuantizedParameters);
        Assert.InRange(result.BytesPerQuantizedParameter, 0.5156, 0.5175);

        // Recount from the file: per weight of n elements, n/2 code bytes, n/64 absmax codes, 4 bytes per 256 blocks,
        // the two code tables (16 and 256 floats) and the quant-state JSON.
        using var written = new HfModelFolder(result.Output);
        long expected = 0;
        foreach (var spec in LlamaTensorNames.Layer(config, 0).Where(t => t.Shape.Length == 2))
        {
            var n = spec.ElementCount;
            var json = written.Describe(spec.Name + Nf4Serialization.QuantStateSuffix).ElementCount;
            expected += n / 2 + n / 64 + 4 * ((n / 64 + 255) / 256) + 16 * 4 + 256 * 4 + json;
        }
        Assert.Equal(expected, result.QuantizedBytes);
    }
}
