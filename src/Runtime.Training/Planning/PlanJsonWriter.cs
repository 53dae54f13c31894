using System.Text;
using System.Text.Json;

namespace Runtime.Training.Planning;

/// <summary>
/// The plan as JSON with stable snake_case names: <c>parameters</c>, <c>trainable_parameters</c>, <c>per_gpu</c>
/// {<c>weights_bytes</c>, <c>trainable_bytes</c>, <c>gradients_bytes</c>, <c>optimizer_bytes</c>,
/// <c>activations_bytes</c>, <c>buffers_bytes</c>, <c>reserve_bytes</c>, <c>total_bytes</c>, <c>capacity_bytes</c>},
/// <c>fits</c>, <c>gpus</c>, <c>min_gpus</c>, <c>layouts</c>, plus the request, the layout, every stage, the
/// activation formula and the assumptions behind the numbers.
/// </summary>
public static class PlanJsonWriter
{
    public static string Write(MemoryPlan plan)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            Write(w, plan);
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    public static void Write(Utf8JsonWriter w, MemoryPlan plan)
    {
        var r = plan.Request;
        w.WriteStartObject();
        w.WriteString("model", r.ModelName);
        w.WriteString("method", PlanNames.Method(r.Method));
        w.WriteString("precision", PlanNames.Precision(r.Precision));
        if (r.IsLora)
        {
            w.WriteStartObject("lora");
            w.WriteNumber("rank", r.Lora.Rank);
            w.WriteStartArray("targets");
            foreach (var t in r.Lora.Targets) w.WriteStringValue(t);
            w.WriteEndArray();
            w.WriteNumber("dropout", r.Lora.Dropout);
            w.WriteEndObject();
        }
        else w.WriteNull("lora");
        w.WriteNumber("micro_batch_size", r.MicroBatchSize);
        w.WriteNumber("sequence_length", r.SequenceLength);
        w.WriteBoolean("packing", r.Packing);
        w.WriteBoolean("gradient_checkpointing", r.GradientCheckpointing);
        w.WriteNumber("micro_batches", plan.Chosen.MicroBatches);
        w.WriteString("schedule", PlanNames.Schedule(r.Schedule));
        w.WriteString("attention", PlanNames.Attention(r.Attention));
        w.WriteString("optimizer_sharding", r.OptimizerSharding.ToString().ToLowerInvariant());

        w.WriteStartObject("gpu");
        w.WriteString("name", r.Gpu.Name);
        w.WriteString("product", r.Gpu.Product);
        w.WriteNumber("capacity_bytes", r.Gpu.CapacityBytes);
        w.WriteNumber("gpus_per_node", r.Gpu.GpusPerNode);
        w.WriteEndObject();
        w.WriteNumber("headroom", r.Headroom);
        w.WriteNumber("budget_bytes", plan.BudgetBytes);
        w.WriteStartObject("reserve");
        w.WriteNumber("fragmentation_fraction", r.Reserve.FragmentationFraction);
        w.WriteNumber("runtime_bytes", r.Reserve.RuntimeBytes);
        w.WriteEndObject();

        w.WriteNumber("parameters", plan.Parameters);
        w.WriteNumber("trainable_parameters", plan.TrainableParameters);

        w.WriteStartObject("layout");
        WriteLayout(w, plan.Chosen.Layout);
        w.WriteString("chosen_by", plan.ChosenBy == LayoutChoice.Given ? "given" : "search");
        w.WriteBoolean("vocab_parallel", r.VocabularyParallel && plan.Chosen.Layout.Tp > 1);
        w.WriteEndObject();
        w.WriteNumber("gpus", plan.Gpus);
        w.WriteNumber("nodes", plan.Nodes);

        var peak = plan.Chosen.Peak;
        w.WriteStartObject("per_gpu");
        w.WriteNumber("stage", peak.Stage);
        WriteMemory(w, peak.Memory);
        w.WriteNumber("capacity_bytes", plan.CapacityBytes);
        w.WriteNumber("activations_with_recompute_bytes", peak.ActivationsWithRecompute);
        w.WriteNumber("activations_without_recompute_bytes", peak.ActivationsWithoutRecompute);
        w.WriteEndObject();
        w.WriteBoolean("fits", plan.Fits);

        if (plan.Minimum is { } min)
        {
            w.WriteNumber("min_gpus", min.Layout.Gpus);
            w.WriteNumber("min_nodes", plan.MinNodes!.Value);
            w.WriteStartObject("min_gpus_layout");
            WriteLayout(w, min.Layout);
            w.WriteNumber("total_bytes", min.PeakBytes);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("min_gpus");
            w.WriteNull("min_nodes");
            w.WriteNull("min_gpus_layout");
        }

        w.WriteNumber("layouts_considered", plan.LayoutsConsidered);
        w.WriteStartArray("layouts");
        foreach (var l in plan.FittingLayouts)
        {
            w.WriteStartObject();
            WriteLayout(w, l.Layout);
            w.WriteNumber("total_bytes", l.PeakBytes);
            w.WriteNumber("peak_stage", l.Peak.Stage);
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartArray("stages");
        foreach (var s in plan.Chosen.Stages)
        {
            w.WriteStartObject();
            w.WriteNumber("stage", s.Stage);
            w.WriteNumber("first_layer", s.FirstLayer);
            w.WriteNumber("layers", s.Layers);
            w.WriteBoolean("embedding", s.HoldsEmbedding);
            w.WriteBoolean("head", s.HoldsHead);
            w.WriteNumber("micro_batches_in_flight", s.MicroBatchesInFlight);
            w.WriteNumber("trainable_parameters", s.TrainableParametersPerGpu);
            WriteMemory(w, s.Memory);
            w.WriteEndObject();
        }
        w.WriteEndArray();

        var f = plan.ActivationFormula;
        w.WriteStartObject("activation_formula");
        w.WriteString("per_layer_per_token", f.PerLayerPerToken);
        w.WriteString("with_recompute", f.WithRecompute);
        w.WriteString("without_recompute", f.WithoutRecompute);
        w.WriteString("symbols", f.Symbols);
        w.WriteString("active", f.Recompute ? "with_recompute" : "without_recompute");
        w.WriteEndObject();

        w.WriteStartArray("assumptions");
        foreach (var a in plan.Assumptions) w.WriteStringValue(a);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    static void WriteLayout(Utf8JsonWriter w, ParallelLayout l)
    {
        w.WriteNumber("tp", l.Tp);
        w.WriteNumber("pp", l.Pp);
        w.WriteNumber("dp", l.Dp);
        w.WriteNumber("gpus", l.Gpus);
    }

    static void WriteMemory(Utf8JsonWriter w, MemoryBreakdown m)
    {
        w.WriteNumber("weights_bytes", m.Weights);
        w.WriteNumber("trainable_bytes", m.Trainable);
        w.WriteNumber("gradients_bytes", m.Gradients);
        w.WriteNumber("optimizer_bytes", m.Optimizer);
        w.WriteNumber("activations_bytes", m.Activations);
        w.WriteNumber("buffers_bytes", m.Buffers);
        w.WriteNumber("reserve_bytes", m.Reserve);
        w.WriteNumber("total_bytes", m.Total);
    }
}
