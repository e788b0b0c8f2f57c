using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Caching device allocator. Freed blocks go to a free list per size class and are handed out again without
/// calling the driver; since all work is ordered on the one stream, a block freed by the host may be reused by
/// the next queued kernel at once (stream order guarantees the earlier users ran first). Sizes round up to
/// 512 bytes below 1 MiB and to 2 MiB above. When the driver is out of memory the cache is emptied and the
/// allocation retried once; a second failure throws <see cref="CudaOutOfMemoryException"/> naming the numbers.
/// </summary>
/// <remarks>
/// CUDA graphs (<see cref="CudaGraph"/>) need one more rule. A captured graph replays with the addresses it was
/// captured with, long after the host code that allocated and freed them has moved on; so while a capture runs every
/// block the allocator hands out, and every block freed, belongs to that capture's <see cref="CapturePool"/>, and the
/// pool's free blocks are reused only by that capture (within it, stream order still holds) — never by eager work —
/// until the graph is disposed and <see cref="Release"/> returns them to the common free lists.
/// </remarks>
internal sealed class CudaAllocator
{
    private readonly Dictionary<long, Stack<ulong>> _free = new();
    private readonly Dictionary<ulong, CapturePool> _poolOf = new();
    private readonly Lock _gate = new();
    private readonly IDeviceMemory _memory;
    private CapturePool? _capturing;
    private long _inUse, _cached, _peak, _driverAllocations;

    internal CudaAllocator(CudaContext context) : this(new DriverMemory(context)) { }

    /// <summary>An allocator over another source of memory (tests check the pool rules with a fake one).</summary>
    internal CudaAllocator(IDeviceMemory memory) => _memory = memory;

    /// <summary>Bytes in blocks handed out (size-class rounded).</summary>
    internal long InUse { get { lock (_gate) return _inUse; } }

    /// <summary>Bytes in freed blocks kept for reuse (including those reserved by capture pools).</summary>
    internal long Cached { get { lock (_gate) return _cached; } }

    /// <summary>Highest <see cref="InUse"/> so far.</summary>
    internal long Peak { get { lock (_gate) return _peak; } }

    /// <summary>How many times the driver was asked for memory (cache misses).</summary>
    internal long DriverAllocations { get { lock (_gate) return _driverAllocations; } }

    /// <summary>Whether a capture is collecting blocks now.</summary>
    internal bool Capturing { get { lock (_gate) return _capturing is not null; } }

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
        CapturePool? pool;
        lock (_gate)
        {
            pool = _capturing;
            // A capture first reuses its own freed blocks, then takes free blocks of the common lists into its pool.
            if (pool is not null && Pop(pool.Free, size) is { } own) { _cached -= size; Take(size); return own; }
            if (Pop(_free, size) is { } common)
            {
                _cached -= size;
                Take(size);
                if (pool is not null) Adopt(pool, common);
                return common;
            }
        }
        var mark = _memory.BeginMark("cuMemAlloc (allocator cache miss)");
        int rc = _memory.Allocate(size, duringCapture: pool is not null, out ulong ptr);
        _memory.EndMark(mark);
        if (rc == Driver.ErrorOutOfMemory)
        {
            // Emptying the cache waits for the stream, which a capture may not do: during one, out of memory is final.
            long cachedBefore = Cached;
            if (pool is null)
            {
                EmptyCache();
                rc = _memory.Allocate(size, duringCapture: false, out ptr);
            }
            if (rc == Driver.ErrorOutOfMemory)
            {
                var (free, total) = _memory.Info();
                throw new CudaOutOfMemoryException(bytes, free, total, cachedBefore, InUse, duringCapture: pool is not null);
            }
        }
        Driver.Check(rc, $"cuMemAlloc({size})");
        lock (_gate)
        {
            Take(size);
            _driverAllocations++;
            if (pool is not null) Adopt(pool, ptr);
        }
        return ptr;
    }

    private static ulong? Pop(Dictionary<long, Stack<ulong>> lists, long size) =>
        lists.TryGetValue(size, out var list) && list.Count > 0 ? list.Pop() : null;

    private static void Push(Dictionary<long, Stack<ulong>> lists, long size, ulong ptr)
    {
        if (!lists.TryGetValue(size, out var list)) lists[size] = list = new Stack<ulong>();
        list.Push(ptr);
    }

    private void Adopt(CapturePool pool, ulong ptr)
    {
        _poolOf[ptr] = pool;
        pool.Blocks++;
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
            _inUse -= classBytes;
            _cached += classBytes;
            if (!_poolOf.TryGetValue(ptr, out var pool) && _capturing is { } capturing)
            {
                // Freed during a capture but allocated before it: the graph may still read it, so the capture keeps it.
                Adopt(capturing, ptr);
                pool = capturing;
            }
            if (pool is not null) Push(pool.Free, classBytes, ptr);
            else Push(_free, classBytes, ptr);
        }
    }

    /// <summary>Starts collecting every block handed out or freed into a new pool (see the remarks).</summary>
    internal CapturePool BeginCapture()
    {
        lock (_gate)
        {
            if (_capturing is not null) throw new InvalidOperationException("a CUDA graph capture is already running on this device");
            return _capturing = new CapturePool();
        }
    }

    /// <summary>Stops collecting; the pool stays reserved for its graph until <see cref="Release"/>.</summary>
    internal void EndCapture(CapturePool pool)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_capturing, pool)) throw new InvalidOperationException("EndCapture: this pool is not the one capturing");
            _capturing = null;
        }
    }

    /// <summary>
    /// The graph of <paramref name="pool"/> is gone: its free blocks join the common lists (eager work queued from now
    /// on runs after any replay already queued, by stream order), and its blocks still held by tensors will when freed.
    /// </summary>
    internal void Release(CapturePool pool)
    {
        lock (_gate)
        {
            if (pool.Released) return;
            pool.Released = true;
            if (ReferenceEquals(_capturing, pool)) _capturing = null;
            foreach (var (size, list) in pool.Free)
                foreach (var p in list) Push(_free, size, p);
            pool.Free.Clear();
            foreach (var p in _poolOf.Where(kv => ReferenceEquals(kv.Value, pool)).Select(kv => kv.Key).ToList()) _poolOf.Remove(p);
        }
    }

    /// <summary>Gives every cached block of the common lists back to the driver (after the queued work has finished with them).</summary>
    internal void EmptyCache()
    {
        lock (_gate)
            if (_capturing is not null) throw new InvalidOperationException("EmptyCache: not during a CUDA graph capture (it waits for the stream)");
        _memory.Synchronize();
        List<(ulong Ptr, long Size)> blocks;
        lock (_gate)
        {
            blocks = _free.SelectMany(kv => kv.Value.Select(p => (p, kv.Key))).ToList();
            _free.Clear();
            foreach (var (_, size) in blocks) _cached -= size;
        }
        foreach (var (p, _) in blocks) _memory.Free(p);
    }

    /// <summary>Forgets the peak (sets it to the bytes in use now).</summary>
    internal void ResetPeak()
    {
        lock (_gate) _peak = _inUse;
    }

    /// <summary>The blocks one capture owns: those it handed out or adopted, and which of them are free for its reuse.</summary>
    internal sealed class CapturePool
    {
        internal readonly Dictionary<long, Stack<ulong>> Free = new();
        /// <summary>Blocks taken or adopted (held or free).</summary>
        internal int Blocks;
        internal bool Released;

        /// <summary>Free blocks of the pool (for tests and statistics).</summary>
        internal int FreeBlocks => Free.Values.Sum(s => s.Count);
    }

    /// <summary>Where the memory comes from: the driver, or a fake in tests.</summary>
    internal interface IDeviceMemory
    {
        /// <summary>
        /// A new block (a CUresult). <paramref name="duringCapture"/>: a stream capture is recording on this thread, in
        /// whose thread-local mode cuMemAlloc is a prohibited call (it would fail and invalidate the capture), so the
        /// driver's implementation switches the thread to relaxed mode around it, as PyTorch's allocator does; the
        /// allocation itself is not recorded (the graph keeps the address, the pool keeps the block).
        /// </summary>
        int Allocate(long bytes, bool duringCapture, out ulong ptr);
        void Free(ulong ptr);
        void Synchronize();
        (long Free, long Total) Info();
        CudaProfiler.Mark BeginMark(string name);
        void EndMark(CudaProfiler.Mark mark);
    }

    private sealed class DriverMemory(CudaContext context) : IDeviceMemory
    {
        public int Allocate(long bytes, bool duringCapture, out ulong ptr)
        {
            context.MakeCurrent();
            if (!duringCapture) return Driver.cuMemAlloc(out ptr, (nuint)bytes);
            int mode = Driver.StreamCaptureModeRelaxed;
            Driver.Check(Driver.cuThreadExchangeStreamCaptureMode(ref mode), "cuThreadExchangeStreamCaptureMode");
            try { return Driver.cuMemAlloc(out ptr, (nuint)bytes); }
            finally { Driver.Check(Driver.cuThreadExchangeStreamCaptureMode(ref mode), "cuThreadExchangeStreamCaptureMode"); }
        }

        public void Free(ulong ptr) => Driver.Check(Driver.cuMemFree(ptr), "cuMemFree");
        public void Synchronize() => context.Synchronize();
        public (long Free, long Total) Info() => context.MemoryInfo();
        public CudaProfiler.Mark BeginMark(string name) => context.Profiler.BeginHost(name);
        public void EndMark(CudaProfiler.Mark mark) => context.Profiler.End(mark);
    }
}
