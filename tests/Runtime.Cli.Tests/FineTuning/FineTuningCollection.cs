using TorchSharp;

namespace Runtime.Cli.Tests.FineTuning;

/// <summary>
/// The fine-tuning tests train for hundreds of small steps. On the shared 2-core machines libtorch's two intra-op
/// threads spin against other jobs: measured, 480 steps of the tiny preset took 336 s with two threads and 33 s with
/// one (same results bitwise). So these classes run one after another with one torch thread, restored afterwards.
/// </summary>
[CollectionDefinition(Name)]
public sealed class FineTuningCollection : ICollectionFixture<FineTuningCollection.SingleTorchThread>
{
    public const string Name = "Fine-tuning";

    public sealed class SingleTorchThread : IDisposable
    {
        readonly int _previous = torch.get_num_threads();

        public SingleTorchThread() => torch.set_num_threads(1);

        public void Dispose() => torch.set_num_threads(_previous);
    }
}
