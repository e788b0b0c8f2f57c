using System.IO.MemoryMappedFiles;

namespace Parrot.Tensors.Formats;

/// <summary>
/// A file opened for memory mapping, shared by the reader that opened it and by every tensor that views a
/// range of it, and closed when the last of them lets go (reference counted, like <see cref="Storage"/>).
/// <para>Each tensor gets its own copy-on-write view (<see cref="MapView"/>): the pages are the file's,
/// shared with the operating system's file cache, until someone writes to them, and a write lands in a
/// copy private to that view. So a loaded tensor can be modified in place like any other tensor (an
/// optimizer step, say) without touching the file, without the access violation a read-only mapping would
/// raise, and without the change showing through another tensor loaded from the same bytes.</para>
/// </summary>
internal sealed unsafe class MappedFileRegion
{
    private readonly FileStream _stream;
    private readonly MemoryMappedFile _file;
    private int _refs = 1;

    private MappedFileRegion(FileStream stream, MemoryMappedFile file, long length, string path)
    {
        _stream = stream;
        _file = file;
        Length = length;
        Path = path;
    }

    /// <summary>Length of the file in bytes.</summary>
    public long Length { get; }

    /// <summary>The file, as the caller named it.</summary>
    public string Path { get; }

    /// <summary>
    /// Prepares all of <paramref name="stream"/> (which must not be empty) for mapping, taking ownership of
    /// it. The returned region holds one reference, the caller's.
    /// </summary>
    public static MappedFileRegion Open(FileStream stream, string path)
    {
        long length = stream.Length;
        // The stream stays ours (leaveOpen) so that ReadInto can copy without mapping.
        var file = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0, MemoryMappedFileAccess.CopyOnWrite,
            HandleInheritability.None, leaveOpen: true);
        return new MappedFileRegion(stream, file, length, path);
    }

    /// <summary>
    /// Copies <paramref name="bytes"/> bytes at <paramref name="offset"/> to <paramref name="destination"/>
    /// with plain reads: for tensors that must be copied anyway, this skips mapping a view.
    /// </summary>
    public void ReadInto(long offset, byte* destination, long bytes)
    {
        for (long done = 0; done < bytes;)
        {
            int chunk = (int)Math.Min(bytes - done, 1 << 30);
            int got = RandomAccess.Read(_stream.SafeFileHandle, new Span<byte>(destination + done, chunk), offset + done);
            if (got <= 0) throw SafetensorsErrors.Bad(Path, null, "the file ended early while a tensor was being read (was it truncated meanwhile?)");
            done += got;
        }
    }

    /// <summary>
    /// Maps <paramref name="length"/> (&gt; 0) bytes at <paramref name="offset"/> as a new copy-on-write view
    /// and returns the address of the first; the caller disposes <paramref name="view"/> after
    /// releasing the pointer (see <see cref="Unmap"/>).
    /// </summary>
    public static byte* MapView(MappedFileRegion region, long offset, long length, out MemoryMappedViewAccessor view)
    {
        view = region._file.CreateViewAccessor(offset, length, MemoryMappedFileAccess.CopyOnWrite);
        byte* p = null;
        try
        {
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        }
        catch
        {
            view.Dispose();
            throw;
        }
        // The view starts at a page boundary at or before offset; PointerOffset is the distance to offset.
        return p + view.PointerOffset;
    }

    /// <summary>Undoes <see cref="MapView"/>.</summary>
    public static void Unmap(MemoryMappedViewAccessor view)
    {
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
    }

    /// <summary>Adds a user; fails (returns false) once the file has been closed.</summary>
    public bool TryRetain()
    {
        int r;
        do
        {
            r = Volatile.Read(ref _refs);
            if (r <= 0) return false;
        } while (Interlocked.CompareExchange(ref _refs, r + 1, r) != r);
        return true;
    }

    /// <summary>Drops a user; the last one closes the file (views already made stay valid until unmapped).</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            _file.Dispose();
            _stream.Dispose();
        }
    }
}
