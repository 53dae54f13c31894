using Runtime.Model.Config;

namespace Runtime.Training.Planning;

/// <summary>The parameter-sized categories of one GPU: frozen weights, trained weights, their gradients, optimizer state.</summary>
public readonly record struct StateBytes(long Weights, long Trainable, long Gradients, long Optimizer, long TrainableParameters)
{
    public long Total => Weights + Trainable + Gradients + Optimizer;
}

/// <summary>
/// Counts what one tensor-parallel rank of one pipeline stage stores. Megatron splits: q, k, v, gate, up by output rows,
/// o, down by input columns; embedding and lm_head by vocabulary rows when the request is vocab-parallel (a spec's
/// run.parallel.vocab-parallel = on), else every rank holds them whole; norms are replicated. With tied embeddings and
/// more than one stage, the last stage holds its own copy of the embedding as lm_head (Megatron's convention).
/// <para>Bytes a parameter: full fine-tuning in bf16 keeps bf16 weights (2), fp32 gradients (4: accumulated across
/// micro-batches in fp32 like Megatron's main_grad), AdamW m and v (8) and an fp32 master copy (4) = 18; in fp32 there
/// is no master copy (16). LoRA keeps the base frozen (bf16 or fp32; QLoRA: the seven projections in NF4, embeddings,
/// norms and lm_head in bf16) and adapters in fp32 with fp32 gradients and AdamW state (16 per adapter parameter).
/// Under tensor parallelism an adapter's A of a column-parallel projection and B of a row-parallel one are replicated
/// on every rank (NeMo/Megatron's LoRA split), so they cost each rank in full.</para>
/// </summary>
public static class StateAccounting
{
    public static void CheckTensorParallel(LlamaConfig c, int tp)
    {
        if (c.NumAttentionHeads % tp != 0 || c.NumKeyValueHeads % tp != 0)
            throw new PlanningException(
                $"tp {tp} must divide num_attention_heads ({c.NumAttentionHeads}) and num_key_value_heads ({c.NumKeyValueHeads}): " +
                "Runtime splits whole heads and does not replicate key/value heads");
        if (c.IntermediateSize % tp != 0)
            throw new PlanningException($"tp {tp} must divide intermediate_size ({c.IntermediateSize})");
    }

    public static bool TensorParallelFits(LlamaConfig c, int tp) =>
        c.NumAttentionHeads % tp == 0 && c.NumKeyValueHeads % tp == 0 && c.IntermediateSize % tp == 0;

    /// <summary>Adapter parameters of the whole model (no parallelism): r·(in + out) per targeted projection.</summary>
    public static long AdapterParameters(LlamaConfig c, LoraSettings lora) =>
        c.NumHiddenLayers * LinearModule.OfLayer(c).Where(m => lora.Targets.Contains(m.Name)).Sum(m => lora.Rank * (m.In + m.Out));

    /// <summary>Adapter parameters on one tp rank for one layer.</summary>
    public static long AdapterParametersPerLayer(LlamaConfig c, LoraSettings lora, int tp) =>
        LinearModule.OfLayer(c).Where(m => lora.Targets.Contains(m.Name)).Sum(m => m.Split == TensorSplit.Column
            ? lora.Rank * m.In + m.Out / tp * lora.Rank
            : lora.Rank * (m.In / tp) + m.Out * lora.Rank);

    public static StateBytes ForStage(PlanRequest request, int tp, int layers, bool holdsEmbedding, bool holdsHead, int pipelineStages)
    {
        var c = request.Model;
        long h = c.HiddenSize;
        long vocabRows = request.VocabularyRowsPerRank(tp);
        var modules = LinearModule.OfLayer(c);
        long linearPerLayer = modules.Sum(m => m.Parameters / tp);
        long normsPerLayer = 2 * h;
        long embedding = holdsEmbedding ? vocabRows * h : 0;
        bool headCopy = !c.TieWordEmbeddings || pipelineStages > 1;
        long head = holdsHead ? h + (headCopy ? vocabRows * h : 0) : 0;
        long unquantized = layers * normsPerLayer + embedding + head;
        long all = layers * linearPerLayer + unquantized;
        int w = request.ComputeBytes;

        if (request.Method == FineTuneMethod.Full)
        {
            long master = w < 4 ? 4 : 0;
            return new StateBytes(0, w * all, 4 * all, (8 + master) * all, all);
        }

        long frozen = request.Method == FineTuneMethod.Qlora
            ? layers * modules.Sum(m => Nf4Storage.Bytes(m.Parameters / tp)) + 2 * unquantized
            : w * all;
        long adapters = layers * AdapterParametersPerLayer(c, request.Lora, tp);
        return new StateBytes(frozen, 4 * adapters, 4 * adapters, 8 * adapters, adapters);
    }
}
