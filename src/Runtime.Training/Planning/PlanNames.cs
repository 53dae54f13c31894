namespace Runtime.Training.Planning;

/// <summary>The spellings of the request's choices, shared by the CLI, the table and the JSON.</summary>
public static class PlanNames
{
    public static string Method(FineTuneMethod m) => m switch
    {
        FineTuneMethod.Full => "full",
        FineTuneMethod.Lora => "lora",
        _ => "qlora",
    };

    public static string Precision(ComputePrecision p) => p == ComputePrecision.Bf16 ? "bf16" : "fp32";
    public static string Schedule(PipelineSchedule s) => s == PipelineSchedule.OneFOneB ? "1f1b" : "gpipe";
    public static string Attention(AttentionKernel a) => a == AttentionKernel.Fused ? "fused" : "eager";

    public static FineTuneMethod ParseMethod(string s) => s.Trim().ToLowerInvariant() switch
    {
        "full" => FineTuneMethod.Full,
        "lora" => FineTuneMethod.Lora,
        "qlora" => FineTuneMethod.Qlora,
        _ => throw new PlanningException($"unknown method '{s}' (use full, lora or qlora)"),
    };

    public static ComputePrecision ParsePrecision(string s) => s.Trim().ToLowerInvariant() switch
    {
        "bf16" or "bfloat16" => ComputePrecision.Bf16,
        "fp32" or "float32" => ComputePrecision.Fp32,
        _ => throw new PlanningException($"unknown precision '{s}' (use bf16 or fp32)"),
    };

    public static PipelineSchedule ParseSchedule(string s) => s.Trim().ToLowerInvariant() switch
    {
        "1f1b" => PipelineSchedule.OneFOneB,
        "gpipe" => PipelineSchedule.GPipe,
        _ => throw new PlanningException($"unknown pipeline schedule '{s}' (use 1f1b or gpipe)"),
    };

    public static AttentionKernel ParseAttention(string s) => s.Trim().ToLowerInvariant() switch
    {
        "fused" or "sdpa" or "flash" => AttentionKernel.Fused,
        "eager" => AttentionKernel.Eager,
        _ => throw new PlanningException($"unknown attention kernel '{s}' (use fused or eager)"),
    };
}
