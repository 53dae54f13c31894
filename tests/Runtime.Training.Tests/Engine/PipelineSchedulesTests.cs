using Runtime.Training.Engine;
using Runtime.Training.Planning;

namespace Runtime.Training.Tests.Engine;

public class PipelineSchedulesTests
{
    static string Text(IEnumerable<PipelineOp> ops) => string.Join(" ", ops);

    [Fact]
    public void OneFOneB_for_four_stages_and_six_micro_batches_runs_warm_up_steady_state_and_cool_down()
    {
        // Written out by hand from the rule: stage s warms up with min(p - s - 1, m) forwards.
        string[] expected =
        [
            "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5",
            "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5",
            "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5",
            "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5",
        ];
        for (int s = 0; s < 4; s++) Assert.Equal(expected[s], Text(PipelineSchedules.OneFOneB(4, s, 6)));
    }

    [Fact]
    public void OneFOneB_with_fewer_micro_batches_than_stages_degenerates_to_all_forwards_then_all_backwards_early_on()
    {
        Assert.Equal("F0 F1 B0 B1", Text(PipelineSchedules.OneFOneB(4, 0, 2)));
        Assert.Equal("F0 F1 B0 B1", Text(PipelineSchedules.OneFOneB(4, 1, 2)));
        Assert.Equal("F0 B0 F1 B1", Text(PipelineSchedules.OneFOneB(4, 3, 2)));
        Assert.Equal("F0 B0", Text(PipelineSchedules.OneFOneB(1, 0, 1)));
    }

    [Fact]
    public void GPipe_runs_every_forward_then_every_backward_on_every_stage()
    {
        for (int s = 0; s < 3; s++) Assert.Equal("F0 F1 F2 F3 B0 B1 B2 B3", Text(PipelineSchedules.GPipe(3, s, 4)));
        Assert.Equal(Text(PipelineSchedules.GPipe(3, 0, 4)), Text(PipelineSchedules.For(PipelineSchedule.GPipe, 3, 0, 4)));
        Assert.Equal(Text(PipelineSchedules.OneFOneB(3, 0, 4)), Text(PipelineSchedules.For(PipelineSchedule.OneFOneB, 3, 0, 4)));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 8)]
    [InlineData(2, 4)]
    [InlineData(4, 2)]
    [InlineData(4, 6)]
    [InlineData(8, 16)]
    public void Peak_activations_in_flight_are_min_of_remaining_stages_and_micro_batches_for_1F1B_and_all_for_GPipe(int p, int m)
    {
        for (int s = 0; s < p; s++)
        {
            Assert.Equal(Math.Min(p - s, m), PipelineSchedules.PeakInFlight(PipelineSchedules.OneFOneB(p, s, m)));
            Assert.Equal(m, PipelineSchedules.PeakInFlight(PipelineSchedules.GPipe(p, s, m)));
        }
    }

    [Theory]
    [InlineData(PipelineSchedule.OneFOneB, 1, 3)]
    [InlineData(PipelineSchedule.OneFOneB, 3, 2)]
    [InlineData(PipelineSchedule.OneFOneB, 4, 6)]
    [InlineData(PipelineSchedule.OneFOneB, 5, 9)]
    [InlineData(PipelineSchedule.GPipe, 4, 6)]
    public void Every_stage_runs_each_micro_batch_once_each_way_and_the_stages_together_never_deadlock(PipelineSchedule kind, int p, int m)
    {
        var schedules = Enumerable.Range(0, p).Select(s => PipelineSchedules.For(kind, p, s, m)).ToArray();
        foreach (var ops in schedules)
        {
            Assert.Equal(Enumerable.Range(0, m), ops.Where(o => o.Kind == PipelineOpKind.Forward).Select(o => o.MicroBatch));
            Assert.Equal(Enumerable.Range(0, m), ops.Where(o => o.Kind == PipelineOpKind.Backward).Select(o => o.MicroBatch));
        }

        // Stages as independent threads with blocking receives and non-blocking sends: a forward waits for the previous
        // stage's forward of the same micro-batch, a backward for the next stage's backward. Advance any stage that can.
        var next = new int[p];
        var forwardDone = new bool[p, m];
        var backwardDone = new bool[p, m];
        bool progress = true;
        while (progress)
        {
            progress = false;
            for (int s = 0; s < p; s++)
            {
                if (next[s] == schedules[s].Count) continue;
                var op = schedules[s][next[s]];
                bool ready = op.Kind == PipelineOpKind.Forward
                    ? s == 0 || forwardDone[s - 1, op.MicroBatch]
                    : forwardDone[s, op.MicroBatch] && (s == p - 1 || backwardDone[s + 1, op.MicroBatch]);
                if (!ready) continue;
                if (op.Kind == PipelineOpKind.Forward) forwardDone[s, op.MicroBatch] = true;
                else backwardDone[s, op.MicroBatch] = true;
                next[s]++;
                progress = true;
            }
        }
        Assert.All(Enumerable.Range(0, p), s => Assert.Equal(schedules[s].Count, next[s]));
    }

    [Fact]
    public void Bad_shapes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PipelineSchedules.OneFOneB(0, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PipelineSchedules.OneFOneB(2, 2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PipelineSchedules.GPipe(2, 0, 0));
    }
}
