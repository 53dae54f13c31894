using Runtime.Cluster.Sharding;

namespace Runtime.Cluster.Tests.Sharding;

public class WorkerIdTests
{
    [Fact]
    public void Text_form_is_run_id_then_data_pipeline_tensor()
    {
        var id = new WorkerId("llama3.1-405b-qlora", 1, 0, 3);
        Assert.Equal("run/llama3.1-405b-qlora/1.0.3", id.ToString());
        Assert.Equal(id, WorkerId.Parse(id.ToString()));
    }

    [Theory]
    [InlineData("run/r/0.0")]
    [InlineData("run/r/0.0.0.0")]
    [InlineData("run//0.0.0")]
    [InlineData("job/r/0.0.0")]
    [InlineData("run/r/0.-1.0")]
    [InlineData("run/r/01.0.0")]
    [InlineData("run/bad id/0.0.0")]
    [InlineData("42")]
    public void Other_text_is_not_a_worker_id(string text)
    {
        Assert.False(WorkerId.TryParse(text, out _));
        Assert.Throws<FormatException>(() => WorkerId.Parse(text));
    }
}
