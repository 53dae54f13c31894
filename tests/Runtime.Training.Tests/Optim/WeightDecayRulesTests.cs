using Runtime.Training.Optim;

namespace Runtime.Training.Tests.Optim;

public class WeightDecayRulesTests
{
    /// <summary>HF Trainer's get_decay_parameter_names on a one-layer Llama, as transformers 5.17 computed it.</summary>
    [Fact]
    public void AgreesWithHuggingFaceOnEveryLlamaParameter()
    {
        var cases = OptimFixtures.Load("hf-reference.json").GetProperty("full").EnumerateArray()
            .Select(e => (Name: e[0].GetString()!, Decay: e[1].GetBoolean())).ToList();
        Assert.Equal(12, cases.Count);
        Assert.Contains(cases, c => !c.Decay); // the norms
        foreach (var (name, decay) in cases) Assert.True(decay == WeightDecayRules.HuggingFace(name), $"{name}: HF says decay={decay}");
    }

    /// <summary>The same on peft's LoRA wrapper, whose names carry "base_model.model." and the adapter name.</summary>
    [Fact]
    public void DecaysLoraAAndB()
    {
        var cases = OptimFixtures.Load("hf-reference.json").GetProperty("lora").EnumerateArray()
            .Select(e => (Name: e[0].GetString()!, Decay: e[1].GetBoolean())).ToList();
        Assert.Equal(4, cases.Count);
        foreach (var (peftName, decay) in cases)
        {
            var canonical = peftName.Replace("base_model.model.", "").Replace(".default", "");
            Assert.True(decay, peftName);
            Assert.True(WeightDecayRules.HuggingFace(canonical), canonical);
            Assert.True(WeightDecayRules.HuggingFace(peftName), peftName);
        }
    }

    [Theory]
    [InlineData("model.layers.0.self_attn.q_proj.bias", false)]
    [InlineData("model.layers.0.mlp.down_proj.lora_B.weight", true)]
    [InlineData("model.norm.weight", false)]
    [InlineData("norm.weight", false)]
    [InlineData("model.layers.1.self_attn.q_norm.weight", false)] // Qwen3-style "_norm"
    [InlineData("model.layers.1.LayerNorm.weight", false)]        // matched lower-cased, as HF does
    [InlineData("model.normalizer.weight", true)]                  // "norm" only as a whole path component
    [InlineData("model.embed_tokens.weight", true)]
    [InlineData("lm_head.weight", true)]
    public void FollowsHuggingFacesNamePatterns(string name, bool decays) =>
        Assert.Equal(decays, WeightDecayRules.HuggingFace(name));
}
