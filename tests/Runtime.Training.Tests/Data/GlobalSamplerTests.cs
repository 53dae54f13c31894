using Runtime.Training.Data;

namespace Runtime.Training.Tests.Data;

public sealed class GlobalSamplerTests
{
    static GlobalSampler Sampler(int count, ulong seed = 42) => new(count, new SamplerOptions(seed));

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(17)]
    [InlineData(1000)]
    [InlineData(4097)]
    public void Each_epoch_is_a_permutation(int count)
    {
        var sampler = Sampler(count);
        for (int epoch = 0; epoch < 3; epoch++)
            Assert.Equal(Enumerable.Range(0, count), sampler.EpochOrder(epoch).Order());
    }

    [Fact]
    public void The_order_differs_across_epochs_and_seeds_and_is_not_the_identity()
    {
        var a = Sampler(500, seed: 1);
        var b = Sampler(500, seed: 2);
        Assert.NotEqual(Enumerable.Range(0, 500), a.EpochOrder(0));
        Assert.NotEqual(a.EpochOrder(0), a.EpochOrder(1));
        Assert.NotEqual(a.EpochOrder(0), b.EpochOrder(0));
        Assert.Equal(a.EpochOrder(3), Sampler(500, seed: 1).EpochOrder(3)); // a pure function of (seed, epoch)
    }

    [Fact]
    public void Without_shuffle_each_epoch_is_in_example_order()
    {
        var sampler = new GlobalSampler(10, new SamplerOptions(5) { Shuffle = false });
        Assert.Equal(Enumerable.Range(0, 10), sampler.EpochOrder(2));
    }

    [Fact]
    public void The_first_example_is_roughly_uniform_over_seeds()
    {
        // 8 examples, 4000 seeds: each should come first about 500 times; a broken mixer (identity, or a few
        // reachable orders) lands far outside 400..600.
        var counts = new int[8];
        for (ulong seed = 0; seed < 4000; seed++) counts[Sampler(8, seed).ExampleAt(0)]++;
        Assert.All(counts, c => Assert.InRange(c, 400, 600));
    }

    [Fact]
    public void A_step_has_the_same_micro_batches_whatever_the_data_parallel_degree()
    {
        var sampler = Sampler(37);
        var layouts = new[] { new BatchLayout(2, 4, 1), new BatchLayout(2, 2, 2), new BatchLayout(2, 1, 4) };
        for (long step = 0; step < 6; step++)
        {
            var reference = sampler.Step(step, layouts[0]).MicroBatches;
            foreach (var layout in layouts)
            {
                Assert.Equal(8, layout.GlobalBatch);
                var byReplica = Enumerable.Range(0, layout.DataParallel)
                    .SelectMany(d => sampler.ReplicaMicroBatches(step, layout, d).Select(m => (Replica: d, m))).ToArray();
                // Every global micro-batch is run by exactly one replica, the one with j % dp == replica...
                Assert.All(byReplica, x => Assert.Equal(x.m.Index % layout.DataParallel, x.Replica));
                Assert.Equal(Enumerable.Range(0, 4), byReplica.Select(x => x.m.Index).Order());
                // ...and holds the same examples as under any other layout.
                foreach (var (_, m) in byReplica)
                {
                    Assert.Equal(reference[m.Index].Examples, m.Examples);
                    Assert.Equal(reference[m.Index].FirstPosition, m.FirstPosition);
                }
            }
        }
    }

    [Fact]
    public void Micro_batches_cover_the_steps_positions_in_order()
    {
        var sampler = Sampler(50);
        var layout = new BatchLayout(3, 2, 2);
        var step = sampler.Step(4, layout);
        Assert.Equal(48, step.StartPosition);
        Assert.Equal(60, step.EndPosition);
        Assert.Equal([48L, 51, 54, 57], step.MicroBatches.Select(m => m.FirstPosition));
        Assert.Equal(Enumerable.Range(48, 12).Select(p => sampler.ExampleAt(p)), step.Examples);
        Assert.Equal([0, 2], step.ForReplica(0).Select(m => m.Index));
        Assert.Equal([1, 3], step.ForReplica(1).Select(m => m.Index));
    }

    [Fact]
    public void A_step_straddling_two_epochs_continues_into_the_next_permutation()
    {
        var sampler = Sampler(10);
        var step = sampler.Step(2, new BatchLayout(2, 2, 1)); // positions 8..11
        var epoch0 = sampler.EpochOrder(0);
        var epoch1 = sampler.EpochOrder(1);
        Assert.Equal([epoch0[8], epoch0[9], epoch1[0], epoch1[1]], step.Examples);
        Assert.Equal(0, sampler.EpochOf(9));
        Assert.Equal(1, sampler.EpochOf(10));
    }

    [Fact]
    public void Total_steps_are_whole_global_batches_of_positions()
    {
        var layout = new BatchLayout(2, 2, 1); // G = 4
        Assert.Equal(2, GlobalSampler.TotalSteps(10, 1, layout));    // floor(10 / 4)
        Assert.Equal(7, GlobalSampler.TotalSteps(10, 3, layout));    // floor(30 / 4)
        Assert.Equal(6, GlobalSampler.TotalSteps(10, 2.5, layout));  // floor(25 / 4)
        Assert.Equal(0, GlobalSampler.TotalSteps(3, 1, layout));
    }

    [Fact]
    public void Resuming_from_a_saved_position_continues_with_the_next_examples()
    {
        var layoutA = new BatchLayout(2, 3, 1);
        var layoutB = new BatchLayout(1, 3, 2); // same global batch, other split
        var uninterrupted = Sampler(23);
        var straight = Enumerable.Range(0, 10).Select(k => uninterrupted.Step(k, layoutA)).ToArray();

        // Run 4 steps with layout A, save the position, restart (new sampler) with layout B.
        long saved = straight[3].EndPosition;
        Assert.Equal(4L * layoutA.GlobalBatch, saved);
        Assert.Equal(uninterrupted.Step(4, layoutB).StartPosition, saved); // position after k steps is layout-independent
        var resumed = Sampler(23);
        long position = saved;
        for (int k = 4; k < 10; k++)
        {
            var step = resumed.StepAt(position, layoutB);
            Assert.Equal(straight[k].Examples, step.Examples);
            position = step.EndPosition;
        }

        // A resume with another global batch still starts at exactly the next example.
        var bigger = resumed.StepAt(saved, new BatchLayout(4, 2, 2));
        Assert.Equal(straight[4].Examples.Concat(straight[5].Examples).Concat(straight[6].Examples).Take(16), bigger.Examples);
    }

    [Fact]
    public void Length_grouping_sorts_each_window_longest_first_and_stays_a_deterministic_permutation()
    {
        var lengths = Enumerable.Range(0, 103).Select(i => (i * 37) % 50 + 1).ToArray();
        var options = new SamplerOptions(9) { LengthGroupingWindow = 20 };
        var grouped = new GlobalSampler(lengths.Length, options, i => lengths[i]);
        var plain = Sampler(lengths.Length, seed: 9);
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var order = grouped.EpochOrder(epoch);
            var shuffled = plain.EpochOrder(epoch);
            Assert.Equal(Enumerable.Range(0, lengths.Length), order.Order());
            for (int start = 0; start < lengths.Length; start += 20)
            {
                int end = Math.Min(start + 20, lengths.Length);
                // The window holds the same examples as the plain shuffle's window, sorted by decreasing length.
                Assert.Equal(shuffled[start..end].Order(), order[start..end].Order());
                var windowLengths = order[start..end].Select(e => lengths[e]).ToArray();
                Assert.Equal(windowLengths.OrderDescending(), windowLengths);
            }
            Assert.Equal(order, new GlobalSampler(lengths.Length, options, i => lengths[i]).EpochOrder(epoch));
        }
        // Random access gives what a sequential pass gives.
        Assert.Equal(grouped.EpochOrder(1)[57], new GlobalSampler(lengths.Length, options, i => lengths[i]).ExampleAt(103 + 57));
    }
}
