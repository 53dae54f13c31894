using Runtime.Model.TensorParallel;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Model.Tests.TensorParallel;

/// <summary>The in-process group: sums in rank order with identical bits everywhere, and fails loudly instead of hanging.</summary>
public sealed class LocalTensorParallelGroupTests
{
    [Fact]
    public void Every_rank_gets_the_sum_in_rank_order_with_identical_bits()
    {
        // float32 spacing at 1e8 is 8, so the order of addition shows: element 0 is (1e8 + 5) + -1e8 = 8 in rank order
        // but 5 when ranks 0 and 2 are added first; element 1 is (1e8 + -1e8) + 5 = 5 in rank order but 8 reversed.
        float[][] contributions = [[1e8f, 1e8f, 1f], [5f, -1e8f, 10f], [-1e8f, 5f, 100f]];
        var results = TensorParallelRanks.Run(3, group =>
        {
            using var t = tensor(contributions[group.Rank]);
            group.AllReduceSumInPlace(t);
            var once = t.data<float>().ToArray();
            group.AllReduceSumInPlace(t); // the group is reusable: the second call sums the three identical results
            return (Once: once, Twice: t.data<float>().ToArray());
        });
        var expected = Enumerable.Range(0, 3).Select(i => InRankOrder(contributions[0][i], contributions[1][i], contributions[2][i])).ToArray();
        Assert.Equal([8f, 5f, 111f], expected);
        foreach (var (once, twice) in results)
        {
            Assert.Equal(expected, once);
            Assert.Equal(expected.Select(v => InRankOrder(v, v, v)), twice);
        }
    }

    static float InRankOrder(float a, float b, float c)
    {
        float sum = a;
        sum += b;
        sum += c;
        return sum;
    }

    [Fact]
    public void Bf16_contributions_are_summed_in_float32_and_rounded_once()
    {
        // bf16 has 8 significant bits: 256 + 1 rounds back to 256 step by step, but 256 + 1 + 1 = 258 is exact.
        var results = TensorParallelRanks.Run(3, group =>
        {
            using var t = tensor(new[] { group.Rank == 0 ? 256f : 1f }).to(ScalarType.BFloat16);
            group.AllReduceSumInPlace(t);
            Assert.Equal(ScalarType.BFloat16, t.dtype);
            return t.to(ScalarType.Float32).item<float>();
        });
        Assert.All(results, r => Assert.Equal(258f, r));
    }

    [Fact]
    public void Ranks_that_contribute_different_shapes_all_fail_naming_both()
    {
        var error = Assert.Throws<AggregateException>(() => TensorParallelRanks.Run(2, group =>
        {
            using var t = zeros(group.Rank == 0 ? 4 : 5);
            group.AllReduceSumInPlace(t);
            return 0;
        }));
        Assert.Contains("rank 0 contributed Float32 [4], rank 1 Float32 [5]", error.InnerException!.Message);
    }

    [Fact]
    public void A_failed_rank_releases_the_others_through_abort()
    {
        var group = LocalTensorParallelGroup.Create(3, TimeSpan.FromMinutes(5));
        var started = DateTime.UtcNow;
        var error = Assert.Throws<AggregateException>(() => TensorParallelRanks.Run(group, member =>
        {
            if (member.Rank == 1) throw new InvalidOperationException("rank 1 broke before its all-reduce");
            using var t = zeros(2);
            member.AllReduceSumInPlace(t);
            return 0;
        }));
        Assert.Equal("rank 1 broke before its all-reduce", error.InnerException!.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromMinutes(1), "the waiting ranks were not released");
        using var again = zeros(2);
        Assert.Throws<OperationCanceledException>(() => group[0].AllReduceSumInPlace(again));
    }

    [Fact]
    public void A_rank_left_alone_times_out_instead_of_hanging()
    {
        var group = LocalTensorParallelGroup.Create(2, TimeSpan.FromMilliseconds(200));
        using var t = zeros(2);
        var error = Assert.Throws<TimeoutException>(() => group[0].AllReduceSumInPlace(t));
        Assert.Contains("tp rank 0 of 2: all-reduce 1 waited", error.Message);
    }

    [Fact]
    public void A_single_rank_group_changes_nothing()
    {
        var single = LocalTensorParallelGroup.Create(1)[0];
        using var t = tensor(new[] { 1.5f, -2f });
        single.AllReduceSumInPlace(t);
        Assert.Equal([1.5f, -2f], t.data<float>().ToArray());
    }
}
