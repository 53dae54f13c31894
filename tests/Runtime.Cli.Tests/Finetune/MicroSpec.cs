using System.Globalization;
using Runtime.Cluster.Driving;
using Runtime.Cluster.Tests.Training;

namespace Runtime.Cli.Tests.Finetune;

/// <summary>
/// Run spec files over the micro model and data of <see cref="MicroRun"/> (the cluster's training tests use the same):
/// LoRA r 4 on every projection, fp32, 8 samples a step (micro-batch 2 x accumulation 4 / data-parallel replicas),
/// linear schedule from 1e-2, a step logged every step. What `rt finetune` reads.
/// </summary>
public sealed class MicroSpec(MicroRun run)
{
    public MicroRun Run { get; } = run;

    /// <summary>Writes <c>&lt;name&gt;.conf</c> next to the micro run; its output is <c>runs/&lt;name&gt;</c> there.</summary>
    public string Write(string name, int steps = 6, int checkpointEvery = 3, int data = 1, int pipeline = 1, int tensor = 1)
    {
        var path = Path.Combine(Run.Folder, name + ".conf");
        File.WriteAllText(path, string.Create(CultureInfo.InvariantCulture, $$"""
            run {
              name = "{{name}}"
              model = {{Quote(Run.Model)}}
              method = lora
              lora { r = 4, alpha = 8, dropout = 0.0, targets = [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] }
              data { path = {{Quote(Run.Data)}}, max-seq-length = {{MicroRun.RowLength}}, packing = off }
              train { micro-batch-size = 2, grad-accum = {{4 / data}}, epochs = 100, max-steps = {{steps}}, lr = 1e-2, schedule = linear,
                      warmup-ratio = 0.0, weight-decay = 0.01, max-grad-norm = 1.0, precision = fp32,
                      grad-checkpointing = off, seed = {{MicroRun.Seed}} }
              parallel { data = {{data}}, pipeline = {{pipeline}}, tensor = {{tensor}}, schedule = 1f1b }
              checkpoint { every-steps = {{checkpointEvery}}, keep = 2 }
              log { every-steps = 1, tensorboard = off }
            }
            """));
        return path;
    }

    public string Output(string name) => Path.Combine(Run.Folder, "runs", name);

    public string Adapter(string name) => Path.Combine(Output(name), RunOutputs.AdapterFolder);

    static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
