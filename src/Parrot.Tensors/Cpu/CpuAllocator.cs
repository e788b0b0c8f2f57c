using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Host memory for tensors. Large blocks are 2 MiB aligned and advised as transparent huge pages
/// (this machine's THP is madvise-only, and a first touch of a fresh 4 KiB page costs ~16 µs here,
/// 50× more than with huge pages). Freed blocks are cached by size class and handed out again, as
/// every serious engine's device allocator does, so a training step reuses last step's memory instead
/// of faulting in new pages. <see cref="MemoryStats.CpuBytesInUse"/> counts only blocks held by
/// storages; cached blocks are reported separately and released by <see cref="EmptyCache"/>.
/// </summary>
public static unsafe class CpuAllocator
{
    private const long SmallLimit = 64 << 10;          // below: the C allocator is fast and recycles by itself
    private const long HugePage = 2 << 20;
    private const int MadvHugePage = 14;

    private static readonly Dictionary<long, Stack<nint>> Cache = new();
    private static readonly Lock Gate = new();
    private static long _cachedBytes;

    /// <summary>glibc's M_TRIM_THRESHOLD (a mallopt parameter).</summary>
    private const int MallocTrimThreshold = -1;

    /// <summary>
    /// Free heap that glibc keeps instead of giving it back (64 MiB, the ceiling of its own dynamic setting).
    /// Blocks up to <see cref="SmallLimit"/> come from malloc; with glibc's starting threshold of 128 KiB each
    /// run of a small model freed its activations past it, glibc returned the pages, and the next run faulted
    /// them in again: ~90 page faults per 64-token prefill of the 1M-parameter tiny LM, half of its time.
    /// </summary>
    internal const int KeptFreeHeapBytes = 64 << 20;

    static CpuAllocator()
    {
        if (!OperatingSystem.IsLinux()) return;
        // (Fixing it also stops glibc adapting its mmap threshold, which stays where it is, 128 KiB at start:
        // large requests keep getting their own mappings, as the 2 MiB-aligned tensor blocks want.)
        try { _ = mallopt(MallocTrimThreshold, KeptFreeHeapBytes); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    /// <summary>Most bytes kept in the cache (default 2 GiB; env PARROT_CPU_CACHE_MB overrides).</summary>
    public static long CacheLimit { get; set; } = ReadLimit();

    /// <summary>Bytes currently cached (freed by tensors, kept for reuse).</summary>
    public static long CachedBytes => Interlocked.Read(ref _cachedBytes);

    /// <summary>The size class a request of <paramref name="bytes"/> is served from.</summary>
    internal static long SizeClass(long bytes)
    {
        if (bytes <= SmallLimit) return Math.Max(bytes, 1);
        if (bytes < HugePage)
        {
            long c = SmallLimit;
            while (c < bytes) c <<= 1;
            return c;
        }
        return (bytes + HugePage - 1) / HugePage * HugePage;
    }

    /// <summary>A block of at least <paramref name="bytes"/> bytes (its size class), 64-byte aligned.</summary>
    internal static nint Allocate(long bytes, out long classBytes)
    {
        classBytes = SizeClass(bytes);
        if (classBytes > SmallLimit)
        {
            lock (Gate)
            {
                if (Cache.TryGetValue(classBytes, out var stack) && stack.Count > 0)
                {
                    _cachedBytes -= classBytes;
                    return stack.Pop();
                }
            }
        }
        return Fresh(classBytes);
    }

    private static nint Fresh(long classBytes)
    {
        nuint align = classBytes >= HugePage ? (nuint)HugePage : 64;
        void* p;
        try { p = NativeMemory.AlignedAlloc((nuint)classBytes, align); }
        catch (OutOfMemoryException)
        {
            EmptyCache();
            try { p = NativeMemory.AlignedAlloc((nuint)classBytes, align); }
            catch (OutOfMemoryException) { throw new OutOfMemoryException($"cannot allocate {classBytes} bytes of host memory for a tensor ({MemoryStats.CpuBytesInUse} in use)"); }
        }
        if (classBytes >= HugePage && OperatingSystem.IsLinux()) AdviseHugePages(p, classBytes);
        return (nint)p;
    }

    /// <summary>Returns a block; large ones go to the cache while it has room.</summary>
    internal static void Free(nint p, long classBytes)
    {
        if (classBytes > SmallLimit)
        {
            lock (Gate)
            {
                if (_cachedBytes + classBytes <= CacheLimit)
                {
                    if (!Cache.TryGetValue(classBytes, out var stack)) Cache[classBytes] = stack = new Stack<nint>();
                    stack.Push(p);
                    _cachedBytes += classBytes;
                    return;
                }
            }
        }
        NativeMemory.AlignedFree((void*)p);
    }

    /// <summary>Gives every cached block back to the system.</summary>
    public static void EmptyCache()
    {
        lock (Gate)
        {
            foreach (var stack in Cache.Values)
                while (stack.Count > 0) NativeMemory.AlignedFree((void*)stack.Pop());
            Cache.Clear();
            _cachedBytes = 0;
        }
    }

    private static void AdviseHugePages(void* p, long bytes)
    {
        try { _ = madvise((nint)p, (nuint)bytes, MadvHugePage); }
        catch (DllNotFoundException) { }
        catch (EntryPointNotFoundException) { }
    }

    [DllImport("libc", SetLastError = false)]
    private static extern int madvise(nint addr, nuint length, int advice);

    [DllImport("libc", SetLastError = false)]
    private static extern int mallopt(int param, int value);

    private static long ReadLimit()
    {
        var s = Environment.GetEnvironmentVariable("PARROT_CPU_CACHE_MB");
        return long.TryParse(s, out var mb) && mb >= 0 ? mb << 20 : 2L << 30;
    }
}
