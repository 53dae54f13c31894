using Runtime.Cluster.Channels;
using Runtime.Cluster.Channels.Collectives;
using Runtime.Cluster.Workers;
using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Tests.Training;

/// <summary>
/// The worker's tensor-parallel group as the model sees it: the keys its calls get (the same sequence on every rank,
/// restarted each step), and failures inside autograd's backward, which must not escape into libtorch (measured: an
/// exception thrown from a custom function's backward ends the test host with "Unhandled exception").
/// </summary>
public sealed class CollectiveTensorParallelGroupTests
{
    /// <summary>Records every key; sums nothing (adds 1, so a call is visible in the tensor); throws when told to.</summary>
    sealed class RecordingGroup(Func<CollectiveKey, Exception?>? failure = null) : ICollectiveGroup
    {
        public List<CollectiveKey> Keys { get; } = [];
        public GroupKind Kind => GroupKind.TensorParallel;
        public IReadOnlyList<WorkerId> Members { get; } = [new("r", 0, 0, 0), new("r", 0, 0, 1)];
        public int Rank => 1;

        public void AllReduceSumInPlace(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default)
        {
            Keys.Add(key);
            if (failure?.Invoke(key) is { } e) throw e;
            tensor.add_(1);
        }

        public Tensor AllReduceSum(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public double AllReduceSum(double value, CollectiveKey key, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public void BroadcastInPlace(Tensor tensor, int root, CollectiveKey key, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    }

    [Fact]
    public void Calls_are_numbered_from_0_each_step_under_the_attempt_and_the_current_micro_batch()
    {
        var group = new RecordingGroup();
        var tp = new CollectiveTensorParallelGroup(group, attempt: 3);
        Assert.Equal((1, 2), (tp.Rank, tp.Size));
        using var scope = NewDisposeScope();
        var t = zeros(2);
        tp.BeginStep(5);
        tp.At(0);
        tp.AllReduceSumInPlace(t);
        tp.AllReduceSumInPlace(t);
        tp.At(2);
        tp.AllReduceSumInPlace(t);
        tp.At(-1);
        tp.AllReduceSumInPlace(t);
        tp.BeginStep(6);
        tp.AllReduceSumInPlace(t);
        Assert.Equal(
            [new CollectiveKey(3, 5, 0, 0), new(3, 5, 1, 0), new(3, 5, 2, 2), new(3, 5, 3, -1), new(3, 6, 0, -1)],
            group.Keys);
        Assert.Equal([5f, 5f], t.data<float>().ToArray());
    }

    [Fact]
    public void Only_a_tensor_parallel_group_is_accepted()
    {
        var dataParallel = new DirectCollectiveGroup(GroupKind.DataParallel, [new("r", 0, 0, 0)], new("r", 0, 0, 0),
            new TensorInbox(new("r", 0, 0, 0)), new InProcessTransport(new TensorRouter()), TimeSpan.FromSeconds(1));
        Assert.Contains("TensorParallel", Assert.Throws<ArgumentException>(() => new CollectiveTensorParallelGroup(dataParallel, 1)).Message);
    }

    [Fact]
    public void A_failure_inside_the_backward_is_kept_the_rest_of_the_step_skipped_and_rethrown_afterwards()
    {
        // The attempt was aborted while autograd ran the copy region's backward: the inbox wait throws there.
        var group = new RecordingGroup(key => key.Sequence == 1 ? new OperationCanceledException("the attempt was aborted") : null);
        var tp = new CollectiveTensorParallelGroup(group, attempt: 1);
        tp.BeginStep(1);
        using (var scope = NewDisposeScope())
        {
            var x = ones(3, requires_grad: true);
            var y = TensorParallelRegions.ReduceFromRegion(TensorParallelRegions.CopyToRegion(x, tp) * 2, tp); // forward: call 0
            y.sum().backward(); // backward: the copy region's call 1 fails inside libtorch's callback; the process survives
            Assert.NotNull(x.grad);
            tp.AllReduceSumInPlace(zeros(1)); // skipped: the step is lost anyway
        }
        Assert.Equal([0L, 1L], group.Keys.Select(k => k.Sequence)); // nothing after the failure reached the group
        var e = Assert.Throws<OperationCanceledException>(tp.ThrowIfFailed); // the original type: the trainer reports StepAborted
        Assert.Equal("the attempt was aborted", e.Message);

        // The next step starts clean.
        tp.BeginStep(2);
        tp.ThrowIfFailed();
        using (var scope = NewDisposeScope()) tp.AllReduceSumInPlace(zeros(1));
        Assert.Equal(new CollectiveKey(1, 2, 0, -1), group.Keys[^1]);
    }
}
