using Runtime.Cluster.Driving;

namespace Runtime.Cluster.DataLoading;

// The data loader protocol. A loader is a child of its replica's first worker (stage 0, tensor rank 0), started by
// InitializeWorker for one attempt; the driver talks to it directly once it has said it is ready.

/// <summary>The loader has opened the run's data (token cache, sampler) and waits for <see cref="LoadStep"/>.</summary>
public sealed record LoaderReady(string RunId, int Attempt, int Replica) : ITrainingProtocol;

/// <summary>
/// The loader could not open or load the data (no tokenizer in the model folder, a bad data file, ...): the run fails,
/// as it would on every attempt. <see cref="Retryable"/>: a worker it sends to is gone instead (the attempt is lost).
/// </summary>
public sealed record LoaderFailed(string RunId, int Attempt, int Replica, string Reason, bool Retryable = false) : ITrainingProtocol;

/// <summary>
/// Send the replica's micro-batches of step <see cref="Step"/> (1-based), the step that starts at global sample
/// position <see cref="StartPosition"/>, to the replica's workers. The driver sends this ahead of the step, so the
/// tensors wait in the workers' inboxes before they are needed.
/// </summary>
public sealed record LoadStep(string RunId, int Attempt, long Step, long StartPosition) : ITrainingProtocol;
