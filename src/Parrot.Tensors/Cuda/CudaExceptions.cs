namespace Parrot.Tensors.Cuda;

/// <summary>A CUDA library call failed; the message names the call and the library's error string.</summary>
public class CudaException : Exception
{
    /// <summary>The library's status code.</summary>
    public int Status { get; }

    /// <summary>Creates the exception for <paramref name="status"/> with a message naming the call.</summary>
    public CudaException(string message, int status) : base(message) => Status = status;
}

/// <summary>
/// No usable CUDA device: the driver or a library is missing, no GPU is present, or initialisation failed.
/// A <see cref="NotSupportedException"/>, so command lines report it as a clear one-line error.
/// </summary>
public sealed class CudaUnavailableException(string reason)
    : NotSupportedException($"no CUDA device: {reason}")
{
    /// <summary>Why CUDA cannot be used, without the "no CUDA device" prefix.</summary>
    public string Reason { get; } = reason;
}

/// <summary>
/// The device ran out of memory even after the allocator's cache was emptied (during a CUDA graph capture, which
/// may not wait for the stream, without emptying it). The process stays usable: free tensors and try again with less.
/// </summary>
public sealed class CudaOutOfMemoryException(long requested, long free, long total, long cached, long inUse, bool duringCapture = false)
    : OutOfMemoryException($"CUDA out of memory: tried to allocate {Bytes(requested)} with {Bytes(free)} free of {Bytes(total)} " +
                           (duringCapture
                               ? $"during a CUDA graph capture (tensors hold {Bytes(inUse)}, the cache holds {Bytes(cached)}, not emptied during a capture)"
                               : $"(tensors hold {Bytes(inUse)}, the cache held {Bytes(cached)} before it was emptied)"))
{
    /// <summary>Bytes asked for.</summary>
    public long Requested { get; } = requested;

    /// <summary>Bytes the driver reported free after the cache was emptied.</summary>
    public long Free { get; } = free;

    internal static string Bytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):0.00} MiB",
        _ => $"{b} bytes",
    };
}
