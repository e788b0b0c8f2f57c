using System.Runtime.InteropServices;

namespace Parrot.Tensors;

/// <summary>
/// A block of memory shared by a tensor and its views, freed deterministically when the last user
/// releases it. The garbage collector never decides when native or device memory goes away; the
/// finalizer is only a safety net for storage that was leaked without being disposed.
/// </summary>
public abstract class Storage
{
    private int _refs = 1;

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Where the bytes live.</summary>
    public Device Device { get; }

    /// <summary>Start of the memory (host pointer for CPU storage, device pointer for CUDA).</summary>
    public nint Pointer { get; private set; }

    /// <summary>True once the memory has been released.</summary>
    public bool IsReleased => Volatile.Read(ref _refs) <= 0;

    /// <summary>Creates storage over memory the subclass has already allocated.</summary>
    protected Storage(nint pointer, long bytes, Device device)
    {
        Pointer = pointer;
        Bytes = bytes;
        Device = device;
    }

    /// <summary>How many views hold this memory now (each tensor over it counts once; 0 once released).</summary>
    public int Users => Math.Max(0, Volatile.Read(ref _refs));

    /// <summary>Adds a user (a new view).</summary>
    internal void Retain()
    {
        int r;
        do
        {
            r = Volatile.Read(ref _refs);
            if (r <= 0) throw new ObjectDisposedException(nameof(Storage), "storage already released");
        } while (Interlocked.CompareExchange(ref _refs, r + 1, r) != r);
    }

    /// <summary>Drops a user; the last one frees the memory.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            var p = Pointer;
            Pointer = 0;
            Free(p);
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Returns the memory to its allocator.</summary>
    protected abstract void Free(nint pointer);

    /// <summary>Safety net: frees leaked memory (it should have been disposed).</summary>
    ~Storage()
    {
        var p = Pointer;
        if (p != 0) { Pointer = 0; Free(p); }
    }
}

/// <summary>Host memory from <see cref="Cpu.CpuAllocator"/>, 64-byte aligned for Vector512 loads.</summary>
public sealed class NativeStorage : Storage
{
    private readonly long _classBytes;

    private NativeStorage(nint p, long bytes, long classBytes) : base(p, bytes, Device.Cpu) => _classBytes = classBytes;

    /// <summary>Allocates <paramref name="bytes"/> bytes, zeroed when <paramref name="zero"/> is set.</summary>
    public static unsafe NativeStorage Allocate(long bytes, bool zero = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        nint p = Cpu.CpuAllocator.Allocate(bytes, out long classBytes);
        if (zero) NativeMemory.Clear((void*)p, (nuint)Math.Max(bytes, 1));
        MemoryStats.OnAllocate(DeviceKind.Cpu, bytes);
        return new NativeStorage(p, bytes, classBytes);
    }

    /// <inheritdoc/>
    protected override void Free(nint pointer)
    {
        if (pointer == 0) return;
        Cpu.CpuAllocator.Free(pointer, _classBytes);
        MemoryStats.OnFree(DeviceKind.Cpu, Bytes);
    }
}

/// <summary>Bytes of tensor memory in use, per device kind: the number a leak test watches.</summary>
public static class MemoryStats
{
    private static long _cpuInUse, _cpuPeak, _cudaInUse, _cudaPeak;

    /// <summary>Bytes of host memory currently held by tensor storages.</summary>
    public static long CpuBytesInUse => Interlocked.Read(ref _cpuInUse);

    /// <summary>Highest value <see cref="CpuBytesInUse"/> has reached.</summary>
    public static long CpuPeakBytes => Interlocked.Read(ref _cpuPeak);

    /// <summary>Bytes of device memory currently held by tensor storages.</summary>
    public static long CudaBytesInUse => Interlocked.Read(ref _cudaInUse);

    /// <summary>Highest value <see cref="CudaBytesInUse"/> has reached.</summary>
    public static long CudaPeakBytes => Interlocked.Read(ref _cudaPeak);

    internal static void OnAllocate(DeviceKind kind, long bytes)
    {
        ref long inUse = ref kind == DeviceKind.Cpu ? ref _cpuInUse : ref _cudaInUse;
        ref long peak = ref kind == DeviceKind.Cpu ? ref _cpuPeak : ref _cudaPeak;
        long now = Interlocked.Add(ref inUse, bytes);
        long p;
        while (now > (p = Interlocked.Read(ref peak)) && Interlocked.CompareExchange(ref peak, now, p) != p) { }
    }

    internal static void OnFree(DeviceKind kind, long bytes)
    {
        if (kind == DeviceKind.Cpu) Interlocked.Add(ref _cpuInUse, -bytes);
        else Interlocked.Add(ref _cudaInUse, -bytes);
    }
}
