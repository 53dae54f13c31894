using TorchSharp;

namespace Runtime.Training.Tests.Engine;

/// <summary>
/// The engine tests run many small training steps. On the shared 2-core build machines libtorch's two intra-op threads
/// spin against other jobs and made each micro step about 20 times slower than one thread (measured: 10 steps 12 s vs
/// 0.6 s under a load of 14), so these classes run serially, with one torch thread, restored afterwards. Results do not
/// depend on it: the tensors are too small for libtorch to split a reduction across threads.
/// </summary>
[CollectionDefinition(Name)]
public sealed class TorchTrainingCollection : ICollectionFixture<SingleTorchThread>
{
    public const string Name = "Torch training";
}

public sealed class SingleTorchThread : IDisposable
{
    readonly int _previous = torch.get_num_threads();

    public SingleTorchThread() => torch.set_num_threads(1);

    public void Dispose() => torch.set_num_threads(_previous);
}
