using Runtime.Training.Engine;
using static TorchSharp.torch;

namespace Runtime.Training.Checkpoints;

/// <summary>
/// A worker's share of a checkpoint: what its <see cref="OptimizerStep"/> trains (fp32 values: the masters of bf16
/// weights) and AdamW's moments, each under its canonical name with the placement the worker owns; and loading them
/// back, from a checkpoint written by any layout. The placement maps a canonical name to where this worker's tensor
/// sits in the full one; by default every tensor is whole (no tensor parallelism). A tensor several workers hold whole
/// (a replicated tensor of tensor-parallel ranks) must be stored once: the reader refuses a tensor stored whole twice.
/// </summary>
public static class WorkerCheckpoint
{
    /// <summary>Writes the worker's two shard files into the temporary folder and returns their descriptions.</summary>
    /// <param name="stores">
    /// Whether this worker stores the trainable tensor of that canonical name and its moments (default: all of them);
    /// a tensor-parallel rank other than 0 leaves out its copies of replicated tensors, which rank 0 stores.
    /// </param>
    public static IReadOnlyList<CheckpointFile> Write(string temporaryFolder, string worker, OptimizerStep optimizer,
        Func<string, TensorPlacement>? placement = null, Func<string, bool>? stores = null)
    {
        var writer = new CheckpointShardWriter(temporaryFolder, worker);
        TensorPlacement Place(string name, Tensor value) => placement?.Invoke(name) ?? TensorPlacement.Whole(value.shape);
        bool Stores(string name) => stores?.Invoke(name) ?? true;

        var trainable = optimizer.Parameters.Where(p => Stores(p.Name))
            .Select(p => new ShardTensor(p.Name, p.Parameter, Place(p.Name, p.Parameter))).ToList();
        var moments = optimizer.ExportOptimizerState();
        try
        {
            var parameterOf = MomentOwners(optimizer);
            var state = moments.Where(m => Stores(parameterOf[m.Key]))
                .Select(m => new ShardTensor(m.Key, m.Value, Place(parameterOf[m.Key], m.Value))).ToList();
            return writer.Write(trainable, state);
        }
        finally
        {
            foreach (var t in moments.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Loads the worker's trainable values and optimizer moments (its own slices of them) and the update count from
    /// <paramref name="reader"/>. Everything is read and checked before anything is set.
    /// </summary>
    public static void Load(CheckpointReader reader, OptimizerStep optimizer, Func<string, TensorPlacement>? placement = null)
    {
        using var scope = NewDisposeScope();
        var values = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var owned = new List<(string, Runtime.Model.IO.TensorSlice?)>();
        foreach (var (name, parameter) in optimizer.Parameters)
        {
            var place = placement?.Invoke(name) ?? TensorPlacement.Whole(parameter.shape);
            var stored = reader.DescribeTrainable(name);
            if (!stored.FullShape.SequenceEqual(place.FullShape))
                throw new CheckpointException(
                    $"{reader.Location}: trainable tensor '{name}' is [{string.Join(", ", stored.FullShape)}] in the checkpoint, [{string.Join(", ", place.FullShape)}] in the model");
            values[name] = reader.Load(name, parameter.dtype, place.Slice);
            owned.Add((name, place.Slice));
        }
        var moments = reader.LoadOptimizerState(owned);
        optimizer.ImportParameters(values);
        optimizer.ImportOptimizerState(moments, reader.State.Step);
    }

    static Dictionary<string, string> MomentOwners(OptimizerStep optimizer)
    {
        var owners = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, _) in optimizer.Parameters)
        {
            owners[name + Optim.AdamW.ExpAvgSuffix] = name;
            owners[name + Optim.AdamW.ExpAvgSqSuffix] = name;
        }
        return owners;
    }
}
