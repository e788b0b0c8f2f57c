using System.Collections.ObjectModel;

namespace Parrot.Tensors.Formats;

/// <summary>
/// An open safetensors file (Hugging Face's tensor format): the header is read and fully validated by
/// <see cref="Open"/> (see the validation rules on the format's header parser: sizes, JSON, dtypes,
/// shapes against byte ranges, no overlaps or gaps, no duplicate names), and tensors are materialised
/// one at a time, by name, when <see cref="Load"/> asks for them.
/// <para>Loading is zero-copy where it can be: a tensor whose stored dtype is the one asked for and whose
/// bytes start at a multiple of its element size in the file becomes a copy-on-write memory-mapped view
/// of those bytes (<see cref="MappedStorage"/>; each load maps its own view, so writing into one tensor
/// changes neither the file nor any other tensor). Files written by
/// the reference implementations, and by <see cref="Safetensors.Save"/>, always align their tensors
/// this way. A misaligned tensor is copied into ordinary memory instead, so that no kernel ever sees a
/// misaligned element (harmless for scalar code on x64, but not something our SIMD and CUDA paths
/// should have to think about); so is a BOOL tensor holding bytes other than 0 and 1 (normalised to 1, as
/// our Bool dtype requires). Each view is one kernel mapping, and a process may only have so many (about
/// 65,000 on Linux): past a quarter of that limit, loads copy instead of mapping (see
/// <see cref="MappedStorage"/>). Loading with another dtype converts (a bf16 checkpoint into float32
/// compute, say).</para>
/// <para>Tensors outlive the reader: disposing it only drops its own hold on the mapping, which goes when
/// the last tensor over it is disposed. As with every memory-mapped reader, truncating the file in place
/// while tensors view it is undefined (the operating system raises a bus error); replacing it through a
/// rename, as our writers do, is safe.</para>
/// <para>Thread-safe: several threads may load from one reader.</para>
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private readonly SafetensorsHeader _header;
    private readonly object _gate = new();
    private FileStream? _stream;
    private MappedFileRegion? _region;
    private bool _disposed;

    private SafetensorsFile(string path, SafetensorsHeader header, FileStream stream)
    {
        Path = path;
        _header = header;
        _stream = stream;
        Names = new ReadOnlyCollection<string>(header.Tensors.Select(t => t.Name).ToArray());
        Metadata = header.Metadata ?? ReadOnlyDictionary<string, string>.Empty;
    }

    /// <summary>
    /// Opens <paramref name="path"/> and validates its header; no tensor data is read or mapped yet.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file; the message names the file, the tensor and the problem.</exception>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 0, FileOptions.RandomAccess);
        try
        {
            var header = SafetensorsHeader.Read(stream.SafeFileHandle, path);
            return new SafetensorsFile(path, header, stream);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The file, as the caller named it.</summary>
    public string Path { get; }

    /// <summary>The tensor names, in the order of their bytes in the file.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Number of tensors.</summary>
    public int Count => Names.Count;

    /// <summary>The header's <c>__metadata__</c> (string to string, in header order); empty when it has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>True when the header has a <c>__metadata__</c> entry (possibly empty).</summary>
    public bool HasMetadata => _header.Metadata is not null;

    /// <summary>What the header says about every tensor, in the order of their bytes in the file.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors => _header.Tensors;

    /// <summary>True once the file has been opened for mapping (by the first load of a non-empty tensor).</summary>
    internal bool IsMapped
    {
        get { lock (_gate) return _region is not null; }
    }

    /// <summary>Offset of the data section (the first tensor byte) from the start of the file.</summary>
    public long DataStart => _header.DataStart;

    /// <summary>True when the file has a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _header.ByName.ContainsKey(name);
    }

    /// <summary>The header's entry for <paramref name="name"/>, or false when there is none.</summary>
    public bool TryGetInfo(string name, out SafetensorsTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_header.ByName.TryGetValue(name, out var found)) { info = found; return true; }
        info = null!;
        return false;
    }

    /// <summary>The header's entry for <paramref name="name"/>: dtype, shape and byte range.</summary>
    /// <exception cref="KeyNotFoundException">The file has no such tensor.</exception>
    public SafetensorsTensorInfo Info(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_header.ByName.TryGetValue(name, out var info)) return info;
        throw new KeyNotFoundException($"{Path}: no tensor named '{FormatText.Printable(name)}' (the file has {Count} tensors{Sample()})");
    }

    /// <summary>
    /// Materialises the tensor <paramref name="name"/> as a CPU tensor, zero-copy when possible (see the
    /// class notes), converted to <paramref name="dtype"/> when one is given and differs from the stored one.
    /// The caller owns (disposes) the result; it stays valid after this reader is disposed.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The file has no such tensor.</exception>
    /// <exception cref="NotSupportedException">The tensor's dtype (I8, U16, F8_E4M3 ...) has no ParrotNative dtype.</exception>
    /// <exception cref="ObjectDisposedException">This reader was disposed.</exception>
    public unsafe Tensor Load(string name, DType? dtype = null)
    {
        var info = Info(name);
        if (info.DType is not DType stored)
            throw new NotSupportedException($"{Path}: tensor '{FormatText.Printable(name)}' has dtype {info.FormatDType}, which ParrotNative cannot load (supported: {SafetensorsDTypes.SupportedNames})");
        DType target = dtype ?? stored;
        int[] shape = info.Shape.ToArray();
        if (info.ElementCount == 0)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return Tensor.Empty(shape, target);
        }

        var region = AcquireRegion();
        Tensor? raw = null;
        try
        {
            long bytes = info.ByteLength;
            bool aligned = info.FileOffset % stored.SizeOf() == 0;  // views start on page boundaries
            if (aligned && TryMap(region, info, out var view, out byte* p))
            {
                if (stored != DType.Bool || IsZeroOrOne(p, bytes))
                {
                    var storage = new MappedStorage(region, view, (nint)p, bytes);  // takes over the view and our reference
                    region = null;
                    raw = new Tensor(storage, shape, Tensor.ContiguousStrides(shape), 0, stored, retain: false);
                }
                else MappedFileRegion.Unmap(view);
            }
            if (raw is null)
            {
                raw = Tensor.Empty(shape, stored);
                region!.ReadInto(info.FileOffset, (byte*)raw.DataPointer, bytes);
                if (stored == DType.Bool) NormalizeBools((byte*)raw.DataPointer, bytes);
            }
        }
        catch
        {
            raw?.Dispose();
            throw;
        }
        finally
        {
            region?.Release();
        }
        if (target == stored) return raw;
        using (raw) return raw.To(target);
    }

    /// <summary>Drops this reader's hold on the file; tensors already loaded stay valid. Safe to call twice.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _stream?.Dispose();
            _stream = null;
            _region?.Release();
            _region = null;
        }
    }

    /// <summary>The mapping, created on first use, with one reference for the caller.</summary>
    private MappedFileRegion AcquireRegion()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_region is null)
            {
                var stream = _stream!;
                long length = stream.Length;
                if (length != _header.FileLength)
                    throw SafetensorsErrors.Bad(Path, null, $"the file changed since it was opened: it had {_header.FileLength} bytes, it now has {length}");
                _region = MappedFileRegion.Open(stream, Path);
                _stream = null;
            }
            if (!_region.TryRetain()) throw new ObjectDisposedException(nameof(SafetensorsFile));
            return _region;
        }
    }

    /// <summary>
    /// Maps the tensor's bytes, or returns false when <see cref="MappedStorage.MaxLiveViews"/> views are
    /// already mapped or the system refuses another mapping: the tensor is then read into memory instead.
    /// </summary>
    private static unsafe bool TryMap(MappedFileRegion region, SafetensorsTensorInfo info, out System.IO.MemoryMappedFiles.MemoryMappedViewAccessor view, out byte* p)
    {
        view = null!;
        p = null;
        if (MappedStorage.LiveCount >= MappedStorage.MaxLiveViews) return false;
        try
        {
            p = MappedFileRegion.MapView(region, info.FileOffset, info.ByteLength, out view);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static unsafe bool IsZeroOrOne(byte* p, long n)
    {
        for (long i = 0; i < n; i++) if (p[i] > 1) return false;
        return true;
    }

    private static unsafe void NormalizeBools(byte* p, long n)
    {
        for (long i = 0; i < n; i++) if (p[i] > 1) p[i] = 1;
    }

    private string Sample()
    {
        if (Count == 0) return "";
        var first = Names.Take(3).Select(n => $"'{FormatText.Printable(n, 80)}'");
        return ", e.g. " + string.Join(", ", first);
    }
}
