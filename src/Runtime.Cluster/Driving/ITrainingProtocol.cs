namespace Runtime.Cluster.Driving;

/// <summary>
/// Anything the run driver, its workers, data loaders and progress subscribers say to each other: serialized by
/// <see cref="TrainingProtocolSerializer"/> (bound in reference.conf), so it crosses nodes as stable JSON.
/// </summary>
public interface ITrainingProtocol;
