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

    /// <summary>
    /// Most views kept mapped at once; past it, loads copy instead. Each view is one kernel mapping, Linux
    /// allows a process about 65,000 (vm.max_map_count), and the runtime itself dies when it cannot map
    /// memory for the JIT, so we stay at a quarter of the limit. (Settable for tests.)
    /// </summary>
    internal static long MaxLiveViews { get; set; } = DefaultMaxLiveViews();

    private static long DefaultMaxLiveViews()
    {
        const string limit = "/proc/sys/vm/max_map_count";
        try
        {
            if (OperatingSystem.IsLinux() && File.Exists(limit) && long.TryParse(File.ReadAllText(limit).Trim(), out long max))
                return Math.Max(256, max / 4);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 65536;
    }

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
