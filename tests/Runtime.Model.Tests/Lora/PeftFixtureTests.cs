using Runtime.Model.IO;
using Runtime.Model.Llama;
using Runtime.Model.Lora;
using Runtime.Model.Tests.IO;
using Runtime.Model.Tests.Parity;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.Lora;

/// <summary>
/// Runtime against a REAL PEFT 0.21 adapter (Fixtures/hf-parity/micro-untied-lora: r 4, alpha 8, all seven targets,
/// B drawn non-zero) and what transformers + PEFT computed with it: the adapted logits and the merged q_proj of layer 0.
/// </summary>
public sealed class PeftFixtureTests
{
    const double Fp32Tolerance = 1e-4;

    static Tensor InputIds() => tensor(HfFixtures.LongRows(HfFixtures.Expected["input_ids"]!).SelectMany(r => r).ToArray(), [2, 12]);

    static Tensor ReferenceLogits()
    {
        using var file = new SafeTensorsFile(HfFixtures.Path_("micro-untied-lora.logits.safetensors"));
        return file.Load("logits");
    }

    static LlamaSlice LoadBase(string folder)
    {
        using var source = new HfModelFolder(folder);
        return LlamaLoader.Load(source, source.Config, options: new LlamaModelOptions { RequiresGrad = false });
    }

    static Tensor Logits(LlamaSlice model)
    {
        using var ids = InputIds();
        using var positions = AttentionContext.SequentialPositions(2, 12);
        using var _ = no_grad();
        return model.forward(ids, positions);
    }

    static float MaxDiff(Tensor a, Tensor b)
    {
        using var diff = (a - b).abs().max();
        return diff.item<float>();
    }

    [Fact]
    public void Base_plus_peft_adapter_gives_peft_logits()
    {
        using var model = LoadBase(HfFixtures.Path_("micro-untied"));
        var config = PeftAdapter.LoadInto(model, HfFixtures.Path_("micro-untied-lora"));
        Assert.Equal(4, config.Rank);
        Assert.Equal(2.0, config.Scaling);
        Assert.Equal(LoraConfig.AllTargets, config.Targets);
        Assert.Equal(3 * 7, model.Model.Layers.Sum(l => LoraConfig.AllTargets.Count(t => LoraInjector.ProjectionOf(l, t).HasLora)));

        using var logits = Logits(model);
        using var expected = ReferenceLogits();
        using var baseOnly = LoadBase(HfFixtures.Path_("micro-untied"));
        using var baseLogits = Logits(baseOnly);
        // The adapter moves the logits far more than the tolerance, so matching PEFT is not matching the base.
        Assert.True(MaxDiff(baseLogits, expected) > 100 * Fp32Tolerance);
        var diff = MaxDiff(logits, expected);
        Assert.True(diff < Fp32Tolerance, $"max |Runtime - PEFT| = {diff}");
    }

    [Fact]
    public void Merging_gives_peft_merged_weight_and_the_adapted_logits()
    {
        using var folder = new TempFolder();
        var output = Path.Combine(folder.Path, "merged");
        var result = LoraMerge.MergeFolder(HfFixtures.Path_("micro-untied"), HfFixtures.Path_("micro-untied-lora"), output);
        Assert.Equal(ScalarType.Float32, result.DType);
        Assert.Equal(3 * 7, result.MergedWeights);

        const string q0 = "model.layers.0.self_attn.q_proj.weight";
        using (var merged = new HfModelFolder(output))
        using (var reference = new SafeTensorsFile(HfFixtures.Path_("micro-untied-lora.merged-q0.safetensors")))
        using (var actual = merged.Load(q0))
        using (var expected = reference.Load(q0))
        {
            Assert.Equal(expected.shape, actual.shape);
            var diff = MaxDiff(actual, expected);
            Assert.True(diff < 1e-6, $"merged q_proj differs from PEFT's by {diff}");
        }

        using var mergedModel = LoadBase(output);
        using var mergedLogits = Logits(mergedModel);
        using var expectedLogits = ReferenceLogits();
        var logitDiff = MaxDiff(mergedLogits, expectedLogits);
        Assert.True(logitDiff < Fp32Tolerance, $"merged model logits differ from PEFT's adapted logits by {logitDiff}");
    }
}
