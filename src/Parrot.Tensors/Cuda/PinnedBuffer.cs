using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// A page-locked host staging buffer for host↔device copies (the DMA engine reads and writes it directly, so
/// copies run at full bus speed). Grows on demand up to <see cref="MaxBytes"/>; larger transfers go in chunks.
/// </summary>
internal sealed unsafe class PinnedBuffer
{
    internal const long MaxBytes = 64L << 20;
    private readonly CudaContext _context;
    private nint _ptr;
    private long _bytes;

    internal PinnedBuffer(CudaContext context) => _context = context;

    /// <summary>The buffer, at least min(<paramref name="bytes"/>, MaxBytes) long.</summary>
    internal (nint Pointer, long Bytes) Get(long bytes)
    {
        long want = Math.Min(Math.Max(bytes, 1 << 20), MaxBytes);
        if (_bytes >= want) return (_ptr, _bytes);
        _context.MakeCurrent();
        if (_ptr != 0)
        {
            _context.Synchronize();
            Driver.Check(Driver.cuMemFreeHost(_ptr), "cuMemFreeHost");
            _ptr = 0; _bytes = 0;
        }
        Driver.Check(Driver.cuMemHostAlloc(out nint p, (nuint)want, Driver.MemHostAllocPortable), $"cuMemHostAlloc({want})");
        (_ptr, _bytes) = (p, want);
        return (_ptr, _bytes);
    }

    /// <summary>Copies host memory to the device through the buffer and waits (the source may be reused at once).</summary>
    internal void ToDevice(nint src, ulong dst, long bytes)
    {
        _context.MakeCurrent();
        var mark = _context.Profiler.BeginHost("copy host to device (waits)");
        var (buf, cap) = Get(bytes);
        for (long done = 0; done < bytes; done += cap)
        {
            long n = Math.Min(cap, bytes - done);
            Buffer.MemoryCopy((void*)(src + (nint)done), (void*)buf, n, n);
            Driver.Check(Driver.cuMemcpyHtoDAsync(dst + (ulong)done, buf, (nuint)n, _context.Stream), "cuMemcpyHtoDAsync");
            _context.Synchronize();
        }
        _context.Profiler.End(mark);
    }

    /// <summary>Copies device memory to the host through the buffer, after all queued work (a synchronisation point).</summary>
    internal void ToHost(ulong src, nint dst, long bytes)
    {
        _context.MakeCurrent();
        var mark = _context.Profiler.BeginHost("copy device to host (waits)");
        var (buf, cap) = Get(bytes);
        for (long done = 0; done < bytes; done += cap)
        {
            long n = Math.Min(cap, bytes - done);
            Driver.Check(Driver.cuMemcpyDtoHAsync(buf, src + (ulong)done, (nuint)n, _context.Stream), "cuMemcpyDtoHAsync");
            _context.Synchronize();
            Buffer.MemoryCopy((void*)buf, (void*)(dst + (nint)done), n, n);
        }
        _context.Profiler.End(mark);
    }
}
