namespace Runtime.Training.Optim;

/// <summary>
/// Optimizer state that does not fit the parameters it is loaded into (a missing or unexpected tensor, a wrong shape or
/// dtype, a bad step count), or a step that cannot run (a parameter without a gradient). The message names the tensors.
/// </summary>
public sealed class OptimizerStateException(string message) : Exception(message);
