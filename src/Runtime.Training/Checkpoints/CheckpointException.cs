namespace Runtime.Training.Checkpoints;

/// <summary>
/// A checkpoint that cannot be used or written: never committed, incomplete, corrupt (a hash or size that does not
/// match its manifest), inconsistent (a tensor's slices do not cover it), or a save that would overwrite a committed one.
/// The message names the folder or file and what is wrong with it.
/// </summary>
public sealed class CheckpointException(string message) : Exception(message);
