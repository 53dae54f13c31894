using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Cluster.Channels.Collectives;

/// <summary>
/// Collectives over the tensor channels (in-process hand-over and Akka remoting, mixed freely).
/// <para>
/// All-reduce is a direct reduce-scatter followed by an all-gather: the flattened tensor is cut into one contiguous
/// segment per member (segment j = elements [j*L/n, (j+1)*L/n)); every member sends segment j to member j; member j
/// sums its segment in member order, <c>((x0 + x1) + x2) + ... + x(n-1)</c>, elementwise in the tensor's dtype (bf16
/// rounds after each addition), whatever order the contributions arrived in; then it sends the reduced segment to
/// every member, which copies the bytes in. So every member ends with the same bits, equal to the member-order sum.
/// Each member sends and receives 2(n-1)/n of the tensor. When a segment is empty (fewer elements than members, e.g.
/// a scalar) nothing is sent for it: a scalar is reduced by member 0 and broadcast.
/// </para>
/// </summary>
public sealed class DirectCollectiveGroup : ICollectiveGroup
{
    readonly TensorInbox _inbox;
    readonly ITensorTransport _transport;
    readonly TimeSpan _timeout;

    public DirectCollectiveGroup(GroupKind kind, IReadOnlyList<WorkerId> members, WorkerId self, TensorInbox inbox,
        ITensorTransport transport, TimeSpan receiveTimeout)
    {
        if (kind == GroupKind.None) throw new ArgumentException("a collective group needs a group kind", nameof(kind));
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count == 0) throw new ArgumentException("a collective group needs at least one member", nameof(members));
        if (members.Distinct().Count() != members.Count) throw new ArgumentException($"{kind} group lists a worker twice: {string.Join(", ", members)}", nameof(members));
        if (members.Any(m => m.Run != self.Run)) throw new ArgumentException($"{kind} group mixes runs: {string.Join(", ", members)}", nameof(members));
        int rank = members.ToList().IndexOf(self);
        if (rank < 0) throw new ArgumentException($"worker {self} is not a member of the {kind} group {string.Join(", ", members)}", nameof(self));
        if (inbox.Owner != self) throw new ArgumentException($"the inbox belongs to {inbox.Owner}, not to {self}", nameof(inbox));
        Kind = kind;
        Members = members.ToArray();
        Rank = rank;
        _inbox = inbox;
        _transport = transport;
        _timeout = receiveTimeout;
    }

    public GroupKind Kind { get; }
    public IReadOnlyList<WorkerId> Members { get; }
    public int Rank { get; }
    WorkerId Self => Members[Rank];

    public void AllReduceSumInPlace(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_contiguous()) throw new ArgumentException($"{Describe(key)}: the tensor must be contiguous to be reduced in place", nameof(tensor));
        int n = Members.Count;
        if (n == 1) return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = tensor.view(-1);
        long length = flat.shape[0];
        long Start(int j) => length * j / n;
        long Length(int j) => Start(j + 1) - Start(j);

        // Reduce-scatter: everyone's copy of segment j goes to member j.
        foreach (int j in Others())
            if (Length(j) > 0)
                _transport.Send(Members[j], Tag(TensorKind.ReduceContribution, key, Self), flat.narrow(0, Start(j), Length(j)).clone());

        Tensor? reduced = null;
        if (Length(Rank) > 0)
        {
            var own = flat.narrow(0, Start(Rank), Length(Rank));
            for (int i = 0; i < n; i++)
            {
                // Received parts are ours (in this scope); only our own segment is copied before adding into it.
                var part = i == Rank ? own : Receive(TensorKind.ReduceContribution, key, i, own, cancellationToken);
                if (reduced is null) reduced = i == Rank ? part.clone() : part;
                else reduced.add_(part);
            }
            own.copy_(reduced!);
        }

        // All-gather: member j's reduced segment goes to everyone, bytes unchanged.
        foreach (int j in Others())
            if (reduced is not null)
                _transport.Send(Members[j], Tag(TensorKind.ReduceResult, key, Self), reduced.clone());
        foreach (int j in Others())
        {
            if (Length(j) == 0) continue;
            var segment = flat.narrow(0, Start(j), Length(j));
            segment.copy_(Receive(TensorKind.ReduceResult, key, j, segment, cancellationToken));
        }
    }

    public Tensor AllReduceSum(Tensor tensor, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Tensor result;
        using (var scope = torch.NewDisposeScope())
            result = tensor.detach().contiguous().clone().MoveToOuterDisposeScope();
        AllReduceSumInPlace(result, key, cancellationToken);
        return result;
    }

    public double AllReduceSum(double value, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        using var scalar = torch.tensor(new[] { value }, ScalarType.Float64);
        AllReduceSumInPlace(scalar, key, cancellationToken);
        return scalar.item<double>();
    }

    public void BroadcastInPlace(Tensor tensor, int root, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (root < 0 || root >= Members.Count) throw new ArgumentOutOfRangeException(nameof(root), root, $"{Describe(key)} has {Members.Count} members");
        if (Members.Count == 1) return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        if (Rank == root)
        {
            foreach (int j in Others())
                _transport.Send(Members[j], Tag(TensorKind.Broadcast, key, Self), tensor.detach().contiguous().clone());
            return;
        }
        tensor.copy_(Receive(TensorKind.Broadcast, key, root, tensor, cancellationToken));
    }

    /// <summary>The other members, starting after this one, so that not everyone sends to member 0 first.</summary>
    IEnumerable<int> Others()
    {
        for (int k = 1; k < Members.Count; k++) yield return (Rank + k) % Members.Count;
    }

    TensorTag Tag(TensorKind kind, CollectiveKey key, WorkerId source) =>
        new(key.Attempt, key.Step, key.MicroBatch, kind, source, Kind, key.Sequence);

    Tensor Receive(TensorKind kind, CollectiveKey key, int member, Tensor like, CancellationToken cancellationToken)
    {
        var tag = Tag(kind, key, Members[member]);
        var part = _inbox.Take(tag, _timeout, cancellationToken);
        if (part.dtype != like.dtype || !part.shape.SequenceEqual(like.shape))
            throw new InvalidOperationException(
                $"{Describe(key)}: member {member} ({Members[member]}) sent {part.dtype}[{string.Join(", ", part.shape)}] for {tag}, " +
                $"expected {like.dtype}[{string.Join(", ", like.shape)}]: the members' tensors differ");
        return part.device == like.device ? part : part.to(like.device);
    }

    string Describe(CollectiveKey key) => $"{Kind} group member {Rank} ({Self}), collective {key}";
}
