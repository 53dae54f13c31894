using Runtime.Model.Config;
using Runtime.Model.IO;

namespace Runtime.Model.Llama;

/// <summary>Builds a slice from stored weights (a Hugging Face folder, a checkpoint), reading only its own tensors.</summary>
public static class LlamaLoader
{
    /// <summary>
    /// Loads the tensors <paramref name="slice"/> needs (default: the whole model) from <paramref name="source"/>,
    /// checking each one's shape and converting it to the options' dtype. Every missing tensor is named at once.
    /// </summary>
    public static LlamaSlice Load(ITensorSource source, LlamaConfig config, LlamaSliceSpec? slice = null,
        LlamaModelOptions? options = null)
    {
        var spec = (slice ?? LlamaSliceSpec.Whole(config)).Validate(config);
        var needed = LlamaTensorNames.ForSlice(config, spec).ToList();
        var missing = needed.Where(t => !source.Contains(t.Name)).Select(t => t.Name).ToList();
        if (missing.Count > 0)
        {
            var hint = missing.Contains(LlamaTensorNames.LmHead) && !config.TieWordEmbeddings
                ? " (the config says tie_word_embeddings = false, so lm_head.weight must be stored)"
                : "";
            throw new TensorFileException(
                $"{source.Location}: missing {missing.Count} tensor(s) for {spec}{hint}: {string.Join(", ", missing)}");
        }
        return LlamaSlice.Build(config, spec, options ?? LlamaModelOptions.Default,
            (tensor, dtype) => source.LoadExpecting(tensor.Name, tensor.Shape, dtype));
    }
}
