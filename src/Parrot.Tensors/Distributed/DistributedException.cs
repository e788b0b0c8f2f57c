namespace Parrot.Tensors.Distributed;

/// <summary>
/// A collective or a process group failed: the launcher's environment is inconsistent, the communication
/// library is missing or reported an error. An I/O failure for callers (a peer is another process).
/// </summary>
public class DistributedException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>
/// A collective did not complete within the group's timeout: a peer died or hangs. The group is broken
/// afterwards (every later collective throws), and disposing it aborts the job instead of waiting.
/// </summary>
public sealed class CollectiveTimeoutException(string message) : DistributedException(message);
