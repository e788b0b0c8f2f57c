using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Caching device allocator. Freed blocks go to a free list per size class and are handed out again without
/// calling the driver; since all work is ordered on the one stream, a block freed by the host may be reused by
/// the next queued kernel at once (stream order guarantees the earlier users ran first). Sizes round up to
/// 512 bytes below 1 MiB and to 2 MiB above. When the driver is out of memory the cache is emptied and the
/// allocation retried once; a second failure throws <see cref="CudaOutOfMemoryException"/> naming the numbers.
/// </summary>
internal sealed class CudaAllocator
{
    private readonly CudaContext _context;
    private readonly Dictionary<long, Stack<ulong>> _free = new();
    private readonly Lock _gate = new();
    private long _inUse, _cached, _peak, _driverAllocations;

    internal CudaAllocator(CudaContext context) => _context = context;

    /// <summary>Bytes in blocks handed out (size-class rounded).</summary>
    internal long InUse { get { lock (_gate) return _inUse; } }

    /// <summary>Bytes in freed blocks kept for reuse.</summary>
    internal long Cached { get { lock (_gate) return _cached; } }

    /// <summary>Highest <see cref="InUse"/> so far.</summary>
    internal long Peak { get { lock (_gate) return _peak; } }

    /// <summary>How many times the driver was asked for memory (cache misses).</summary>
    internal long DriverAllocations { get { lock (_gate) return _driverAllocations; } }

    /// <summary>The size class of a request.</summary>
    internal static long SizeClass(long bytes)
    {
        const long small = 512, large = 2L << 20;
        if (bytes <= 0) return small;
        return bytes <= (1L << 20) ? (bytes + small - 1) / small * small : (bytes + large - 1) / large * large;
    }

    /// <summary>A device block of at least <paramref name="bytes"/> bytes; <paramref name="classBytes"/> is what it really holds.</summary>
    internal ulong Allocate(long bytes, out long classBytes)
    {
        long size = SizeClass(bytes);
        classBytes = size;
        lock (_gate)
        {
            if (_free.TryGetValue(size, out var list) && list.Count > 0)
            {
                _cached -= size;
                Take(size);
                return list.Pop();
            }
        }
        _context.MakeCurrent();
        var mark = _context.Profiler.BeginHost("cuMemAlloc (allocator cache miss)");
        int rc = Driver.cuMemAlloc(out ulong ptr, (nuint)size);
        _context.Profiler.End(mark);
        if (rc == Driver.ErrorOutOfMemory)
        {
            long cachedBefore = Cached;
            EmptyCache();
            rc = Driver.cuMemAlloc(out ptr, (nuint)size);
            if (rc == Driver.ErrorOutOfMemory)
            {
                var (free, total) = _context.MemoryInfo();
                throw new CudaOutOfMemoryException(bytes, free, total, cachedBefore, InUse);
            }
        }
        Driver.Check(rc, $"cuMemAlloc({size})");
        lock (_gate) { Take(size); _driverAllocations++; }
        return ptr;
    }

    private void Take(long size)
    {
        _inUse += size;
        if (_inUse > _peak) _peak = _inUse;
    }

    /// <summary>Returns a block to its free list (no driver call; safe on the finalizer thread).</summary>
    internal void Free(ulong ptr, long classBytes)
    {
        lock (_gate)
        {
            if (!_free.TryGetValue(classBytes, out var list)) _free[classBytes] = list = new Stack<ulong>();
            list.Push(ptr);
            _inUse -= classBytes;
            _cached += classBytes;
        }
    }

    /// <summary>Gives every cached block back to the driver (after the queued work has finished with them).</summary>
    internal void EmptyCache()
    {
        _context.Synchronize();
        List<ulong> blocks;
        lock (_gate)
        {
            blocks = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cached = 0;
        }
        foreach (var p in blocks) Driver.Check(Driver.cuMemFree(p), "cuMemFree");
    }

    /// <summary>Forgets the peak (sets it to the bytes in use now).</summary>
    internal void ResetPeak()
    {
        lock (_gate) _peak = _inUse;
    }
}
