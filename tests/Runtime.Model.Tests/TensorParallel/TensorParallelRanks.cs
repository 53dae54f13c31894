using Runtime.Model.TensorParallel;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>
/// Runs the ranks of a tensor-parallel group at once, each on a thread of its own (as workers would), each building
/// and running its own shard inside its own dispose scopes. A failing rank aborts the group so the others do not wait
/// for it; the first failure is rethrown.
/// </summary>
public static class TensorParallelRanks
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static T[] Run<T>(int size, Func<ITensorParallelGroup, T> body) => Run(LocalTensorParallelGroup.Create(size, Timeout), body);

    public static T[] Run<T>(IReadOnlyList<LocalTensorParallelGroup> group, Func<ITensorParallelGroup, T> body)
    {
        var results = new T[group.Count];
        var failures = new Exception?[group.Count];
        var threads = group.Select(member => new Thread(() =>
        {
            try
            {
                results[member.Rank] = body(member);
            }
            catch (Exception e)
            {
                failures[member.Rank] = e;
                member.Abort();
            }
        }) { Name = $"tp rank {member.Rank}", IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        // The rank that failed first is the cause; the others only saw the abort.
        var cause = failures.FirstOrDefault(f => f is not null and not OperationCanceledException) ?? failures.FirstOrDefault(f => f is not null);
        if (cause is not null) throw new AggregateException($"a tensor-parallel rank failed: {cause.Message}", cause);
        return results;
    }
}
