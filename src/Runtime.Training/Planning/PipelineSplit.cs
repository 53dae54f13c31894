using Runtime.Model.Config;
using Runtime.Model.Llama;

namespace Runtime.Training.Planning;

/// <summary>
/// How a model's decoder layers are cut into pipeline stages: contiguous ranges, stage 0 with the token embedding and
/// the last stage with the final norm and the LM head. The one place this is decided: the memory planner sizes the
/// stages it returns, and the run driver gives each worker the slice it returns, so `rt plan` shows what a run does.
/// </summary>
public static class PipelineSplit
{
    /// <summary>
    /// Layers per stage: every stage gets floor(L / p) layers and the L mod p extra layers go, one each, to the stages
    /// that would be least loaded with one more by <paramref name="totalWith"/>(stage, layers) (ties: the later stage,
    /// so stage 0, which holds the most micro-batches under 1F1B, is spared). Without a cost the extras go to the
    /// last stages.
    /// </summary>
    public static int[] LayerCounts(int layers, int stages, Func<int, int, long>? totalWith = null)
    {
        if (stages < 1) throw new ArgumentOutOfRangeException(nameof(stages), stages, "a pipeline has at least one stage");
        if (layers < stages)
            throw new ArgumentOutOfRangeException(nameof(stages), stages, $"{stages} stages need at least {stages} layers (the model has {layers})");
        int baseCount = layers / stages, extra = layers % stages;
        var counts = Enumerable.Repeat(baseCount, stages).ToArray();
        if (extra == 0) return counts;
        var cost = totalWith ?? ((_, _) => 0);
        var order = Enumerable.Range(0, stages)
            .Select(s => (Stage: s, Total: cost(s, baseCount + 1)))
            .OrderBy(x => x.Total).ThenByDescending(x => x.Stage)
            .Take(extra);
        foreach (var (s, _) in order) counts[s]++;
        return counts;
    }

    /// <summary>The slice of every stage, in stage order, for the given layer counts (see <see cref="LayerCounts"/>).</summary>
    public static IReadOnlyList<LlamaSliceSpec> Slices(IReadOnlyList<int> layerCounts)
    {
        var slices = new LlamaSliceSpec[layerCounts.Count];
        int first = 0;
        for (int s = 0; s < slices.Length; s++)
        {
            slices[s] = new LlamaSliceSpec(first, first + layerCounts[s], HasEmbedding: s == 0, HasHead: s == slices.Length - 1);
            first += layerCounts[s];
        }
        return slices;
    }

    /// <summary>The stages' slices of <paramref name="config"/>, split as <see cref="LayerCounts"/> says.</summary>
    public static IReadOnlyList<LlamaSliceSpec> Slices(LlamaConfig config, int stages, Func<int, int, long>? totalWith = null) =>
        Slices(LayerCounts(config.NumHiddenLayers, stages, totalWith));
}
