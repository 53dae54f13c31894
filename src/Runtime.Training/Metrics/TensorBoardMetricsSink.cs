using TorchSharp;
using TorchSharp.Modules;

namespace Runtime.Training.Metrics;

/// <summary>
/// TensorBoard event files through TorchSharp's <c>SummaryWriter</c> (one <c>events.out.tfevents.*</c> file in the
/// folder, appended event by event), like Hugging Face's <c>report_to="tensorboard"</c>. TorchSharp stamps each event
/// with the wall time in whole Unix seconds.
/// </summary>
public sealed class TensorBoardMetricsSink : IMetricsSink
{
    readonly SummaryWriter _writer;

    public TensorBoardMetricsSink(string folder)
    {
        Directory.CreateDirectory(folder);
        _writer = torch.utils.tensorboard.SummaryWriter(folder);
        Folder = folder;
    }

    public string Folder { get; }

    public void Write(StepMetrics metrics)
    {
        int step = checked((int)metrics.Step);
        foreach (var (tag, value) in metrics.Scalars())
            _writer.add_scalar(tag, (float)value, step);
    }

    // TorchSharp's writer opens and closes the file for every event: nothing to flush or release.
    public void Dispose()
    {
    }
}
