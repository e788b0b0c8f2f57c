namespace Parrot.Tensors.Cuda;

/// <summary>Device memory from the <see cref="CudaAllocator"/>; freeing returns the block to the allocator's cache.</summary>
internal sealed class CudaStorage : Storage
{
    private readonly CudaAllocator _allocator;
    private readonly long _classBytes;

    private CudaStorage(CudaAllocator allocator, ulong ptr, long bytes, long classBytes, Device device)
        : base((nint)ptr, bytes, device)
    {
        _allocator = allocator;
        _classBytes = classBytes;
    }

    internal static CudaStorage Allocate(CudaAllocator allocator, long bytes, Device device)
    {
        ulong p = allocator.Allocate(bytes, out long cls);
        MemoryStats.OnAllocate(DeviceKind.Cuda, bytes);
        return new CudaStorage(allocator, p, bytes, cls, device);
    }

    protected override void Free(nint pointer)
    {
        if (pointer == 0) return;
        _allocator.Free((ulong)pointer, _classBytes);
        MemoryStats.OnFree(DeviceKind.Cuda, Bytes);
    }
}
