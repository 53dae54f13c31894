using Runtime.Training.Tests.Engine;

namespace Runtime.Training.Tests.Metrics;

/// <summary>
/// Tests that read the C allocator's bytes in use: the reading is the whole process's, so nothing else may allocate
/// while they run. xUnit runs a collection with parallelization disabled after the parallel ones, alone; one torch
/// thread as in <see cref="TorchTrainingCollection"/>.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasurementCollection : ICollectionFixture<SingleTorchThread>
{
    public const string Name = "Memory measurement";
}
