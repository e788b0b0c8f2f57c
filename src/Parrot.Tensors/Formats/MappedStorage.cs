using System.IO.MemoryMappedFiles;

namespace Parrot.Tensors.Formats;

/// <summary>
/// Tensor storage that is a copy-on-write memory-mapped view of a range of a file: what
/// <see cref="SafetensorsFile.Load"/> returns when the file's bytes can be used as they are (zero-copy).
/// The view is unmapped when the storage is released; the file stays open while the reader or any such
/// storage uses it.
/// <para>The pages belong to the operating system's file cache, not to our allocator, so these bytes are
/// not counted in <see cref="MemoryStats.CpuBytesInUse"/>; <see cref="BytesInUse"/> counts them instead.
/// Writing into such a tensor works: the written pages become private to this storage, and the file and
/// every other tensor loaded from it are unchanged.</para>
/// </summary>
public sealed class MappedStorage : Storage
{
    private static long _bytesInUse;
    private static long _live;
    private readonly MappedFileRegion _region;
    private readonly MemoryMappedViewAccessor _view;

    /// <summary>Wraps the view <paramref name="view"/> (mapped at <paramref name="pointer"/>), taking over it and one reference to <paramref name="region"/>.</summary>
    internal MappedStorage(MappedFileRegion region, MemoryMappedViewAccessor view, nint pointer, long bytes) : base(pointer, bytes, Device.Cpu)
    {
        _region = region;
        _view = view;
        Interlocked.Add(ref _bytesInUse, bytes);
        Interlocked.Increment(ref _live);
    }

    /// <summary>The file the bytes come from.</summary>
    public string FilePath => _region.Path;

    /// <summary>Bytes of mapped files currently viewed by live tensor storages (not part of <see cref="MemoryStats"/>).</summary>
    public static long BytesInUse => Interlocked.Read(ref _bytesInUse);

    /// <summary>Number of live storages over mapped files: the number a leak test watches.</summary>
    public static long LiveCount => Interlocked.Read(ref _live);

    /// <inheritdoc/>
    protected override void Free(nint pointer)
    {
        if (pointer == 0) return;
        Interlocked.Add(ref _bytesInUse, -Bytes);
        Interlocked.Decrement(ref _live);
        // The pointer we acquired keeps the view's handle alive even when this runs from the finalizer.
        MappedFileRegion.Unmap(_view);
        _region.Release();
    }
}
