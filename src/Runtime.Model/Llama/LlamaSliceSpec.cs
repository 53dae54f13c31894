using Runtime.Model.Config;

namespace Runtime.Model.Llama;

/// <summary>
/// Which part of a Llama model one worker holds: decoder layers [<see cref="FirstLayer"/>, <see cref="EndLayer"/>)
/// (global indices), plus the token embedding when it is the first pipeline stage and the final norm with the LM head
/// when it is the last. An empty layer range is allowed (e.g. a stage that holds only the head).
/// </summary>
public readonly record struct LlamaSliceSpec(int FirstLayer, int EndLayer, bool HasEmbedding, bool HasHead)
{
    /// <summary>The whole model: every layer, the embedding and the head.</summary>
    public static LlamaSliceSpec Whole(LlamaConfig config) => new(0, config.NumHiddenLayers, true, true);

    public int LayerCount => EndLayer - FirstLayer;

    public IEnumerable<int> Layers => Enumerable.Range(FirstLayer, LayerCount);

    public bool HoldsLayer(int layer) => layer >= FirstLayer && layer < EndLayer;

    public bool IsWhole(LlamaConfig config) => this == Whole(config);

    /// <summary>Throws naming the offending bound when the slice does not fit the model.</summary>
    public LlamaSliceSpec Validate(LlamaConfig config)
    {
        if (FirstLayer < 0 || EndLayer < FirstLayer || EndLayer > config.NumHiddenLayers)
            throw new ArgumentException(
                $"slice layers [{FirstLayer}, {EndLayer}) do not fit a model of {config.NumHiddenLayers} layers");
        if (LayerCount == 0 && !HasEmbedding && !HasHead)
            throw new ArgumentException($"slice [{FirstLayer}, {EndLayer}) holds nothing: no layers, no embedding, no head");
        return this;
    }

    public override string ToString() =>
        $"layers [{FirstLayer}, {EndLayer}){(HasEmbedding ? " + embedding" : "")}{(HasHead ? " + head" : "")}";
}
