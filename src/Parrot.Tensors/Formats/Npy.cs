using System.Buffers.Binary;
using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>
/// Reads and writes numpy's .npy format, so any tensor can be handed to numpy and back.
/// <para>Reading: format versions 1.0, 2.0 and 3.0; dtypes &lt;f4 &lt;f8 &lt;f2 &lt;i4 &lt;i8 |u1 |b1, in
/// little- or big-endian byte order (big-endian data is byte-swapped on load); C or Fortran order
/// (Fortran-order data is transposed into a C-order tensor); 0-d and empty arrays. Everything is
/// validated before it is used: magic, version, header length, the header dictionary, the dtype, the
/// shape, and that the data is exactly shape × itemsize bytes. A malformed or unsupported file raises
/// <see cref="InvalidDataException"/> whose message starts with the file name (stream readers pass a
/// name); nothing is allocated for the data before the file is known to hold it (seekable streams).
/// Bool bytes other than 0 are read as true (1).</para>
/// <para>Writing: version 1.0 (2.0 when the header would not fit), C order, the header padded with spaces
/// and ended by '\n' so the data starts at a multiple of 64 bytes, as numpy writes. Files are written to
/// a temporary name in the same folder and renamed, so a crash never leaves half a file. numpy has no
/// bfloat16: BF16 tensors are written as &lt;f4 (every bf16 value is exactly a float32, so nothing is
/// lost; they read back as F32, and To(DType.BF16) restores the original bits).</para>
/// </summary>
public static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Headers longer than this are refused: real ones are under a few hundred bytes.</summary>
    private const int MaxHeaderLength = 1 << 20;

    /// <summary>Reads a .npy file into a new CPU tensor.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid .npy file or uses an unsupported dtype; the message names the file.</exception>
    public static Tensor Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        return Read(file, path);
    }

    /// <summary>Reads one .npy array from <paramref name="stream"/> into a new CPU tensor.</summary>
    /// <param name="stream">The stream, positioned at the magic string. When it is seekable, the data must
    /// end exactly at its end.</param>
    /// <param name="name">How error messages name the source (a file name, say).</param>
    /// <exception cref="InvalidDataException">The data is not a valid .npy array or uses an unsupported dtype.</exception>
    public static unsafe Tensor Read(Stream stream, string name = "stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> prefix = stackalloc byte[12];
        if (ReadFully(stream, prefix[..8]) < 8) throw Bad(name, "too short to be a .npy file (no complete magic string and version)");
        if (!prefix[..6].SequenceEqual(Magic)) throw Bad(name, "not a .npy file: the magic string \\x93NUMPY is missing");
        byte major = prefix[6], minor = prefix[7];
        if (major is < 1 or > 3 || minor != 0)
            throw Bad(name, $"unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)");
        int lengthBytes = major == 1 ? 2 : 4;
        if (ReadFully(stream, prefix.Slice(8, lengthBytes)) < lengthBytes) throw Bad(name, "truncated: the header length is missing");
        long headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..]) : BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
        if (headerLength > MaxHeaderLength) throw Bad(name, $"the header claims {headerLength} bytes, more than the {MaxHeaderLength} allowed");
        if (stream.CanSeek && headerLength > stream.Length - stream.Position)
            throw Bad(name, $"truncated: the header claims {headerLength} bytes but only {stream.Length - stream.Position} remain");
        var headerBytes = new byte[headerLength];
        if (ReadFully(stream, headerBytes) < headerLength) throw Bad(name, $"truncated inside the {headerLength}-byte header");
        string text = DecodeHeader(headerBytes, major, name);
        var header = NpyHeader.Parse(text, name);
        var (dtype, bigEndian) = ParseDescr(header.Descr, name);

        long count = 1;
        foreach (int d in header.Shape)
        {
            if (d != 0 && count > long.MaxValue / 8 / d) throw Bad(name, $"shape {ShapeText(header.Shape)} holds too many elements");
            count *= d;
        }
        long bytes = count * dtype.SizeOf();
        if (stream.CanSeek)
        {
            long remaining = stream.Length - stream.Position;
            if (remaining < bytes)
                throw Bad(name, $"truncated: shape {ShapeText(header.Shape)} of '{header.Descr}' needs {bytes} data bytes but only {remaining} remain");
            if (remaining > bytes)
                throw Bad(name, $"{remaining - bytes} unexpected bytes after the {bytes} data bytes of shape {ShapeText(header.Shape)} of '{header.Descr}'");
        }

        // Fortran-order data is C-order data of the reversed shape, transposed.
        int[] storedShape = header.FortranOrder ? header.Shape.Reverse().ToArray() : header.Shape;
        var tensor = Tensor.Empty(storedShape, dtype);
        try
        {
            byte* p = (byte*)tensor.DataPointer;
            for (long done = 0; done < bytes;)
            {
                int chunk = (int)Math.Min(bytes - done, 1 << 30);
                if (ReadFully(stream, new Span<byte>(p + done, chunk)) < chunk)
                    throw Bad(name, $"truncated: shape {ShapeText(header.Shape)} of '{header.Descr}' needs {bytes} data bytes, the data ends early");
                done += chunk;
            }
            if (bigEndian) SwapBytes(p, count, dtype.SizeOf());
            if (dtype == DType.Bool) NormalizeBools(p, count);
            if (!header.FortranOrder) return tensor;
            var order = Enumerable.Range(0, storedShape.Length).Reverse().ToArray();
            using var transposed = tensor.Permute(order);
            var result = transposed.Contiguous();
            tensor.Dispose();
            return result;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="tensor"/> (any device, any strides) to <paramref name="path"/> as a .npy file,
    /// atomically: into a temporary file in the same folder, renamed over the target when complete.
    /// BF16 is written as float32 (see the class notes).
    /// </summary>
    public static void Write(string path, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensor);
        tensor.EnsureAlive("Npy.Write");
        AtomicFile.Write(path, file => Write(file, tensor));
    }

    /// <summary>Writes <paramref name="tensor"/> to <paramref name="stream"/> in .npy format (see <see cref="Write(string, Tensor)"/>).</summary>
    public static unsafe void Write(Stream stream, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensor);
        tensor.EnsureAlive("Npy.Write");
        var dtype = tensor.DType == DType.BF16 ? DType.F32 : tensor.DType;
        string descr = DescrOf(dtype);
        using var host = tensor.DType != dtype || tensor.Device.Kind != DeviceKind.Cpu ? tensor.To(dtype, Device.Cpu) : tensor.Contiguous();
        string text = NpyHeader.Format(descr, host.Shape);

        // Pad with spaces and end with '\n' so that magic + version + length + header is a multiple of 64.
        int major = 1;
        int prefixLength = 10;
        int padded = RoundUp(prefixLength + text.Length + 1, 64) - prefixLength;
        if (padded > ushort.MaxValue) { major = 2; prefixLength = 12; padded = RoundUp(prefixLength + text.Length + 1, 64) - prefixLength; }
        var head = new byte[prefixLength + padded];
        Magic.CopyTo(head);
        head[6] = (byte)major;
        head[7] = 0;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(head.AsSpan(8), (ushort)padded);
        else BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(8), (uint)padded);
        Encoding.Latin1.GetBytes(text, head.AsSpan(prefixLength));
        head.AsSpan(prefixLength + text.Length, padded - text.Length - 1).Fill((byte)' ');
        head[^1] = (byte)'\n';
        stream.Write(head);

        long bytes = host.Count * host.ElementSize;
        byte* p = (byte*)host.DataPointer;
        for (long done = 0; done < bytes;)
        {
            int chunk = (int)Math.Min(bytes - done, 1 << 30);
            stream.Write(new ReadOnlySpan<byte>(p + done, chunk));
            done += chunk;
        }
    }

    private static int RoundUp(int n, int multiple) => (n + multiple - 1) / multiple * multiple;

    private static string DescrOf(DType dtype) => dtype switch
    {
        DType.F32 => "<f4",
        DType.F64 => "<f8",
        DType.F16 => "<f2",
        DType.I32 => "<i4",
        DType.I64 => "<i8",
        DType.U8 => "|u1",
        DType.Bool => "|b1",
        _ => throw new ArgumentException($"Npy.Write: no .npy dtype for {dtype.Name()}"),
    };

    /// <summary>Maps a numpy type string ('&lt;f4', '&gt;i8', '|b1', ...) to our dtype and whether its bytes need swapping.</summary>
    private static (DType DType, bool BigEndian) ParseDescr(string descr, string name)
    {
        char order = descr.Length > 0 && descr[0] is '<' or '>' or '|' or '=' ? descr[0] : '=';
        string code = order == '=' && !descr.StartsWith('=') ? descr : descr[1..];
        DType? dtype = code switch
        {
            "f4" => DType.F32,
            "f8" => DType.F64,
            "f2" => DType.F16,
            "i4" => DType.I32,
            "i8" => DType.I64,
            "u1" => DType.U8,
            "b1" => DType.Bool,
            _ => null,
        };
        if (dtype is null)
            throw Bad(name, $"dtype '{Printable(descr)}' is not supported (supported: <f4 <f8 <f2 <i4 <i8 |u1 |b1, either byte order)");
        // '=' and '|' mean the machine's order, and every machine .NET runs this code on is little-endian.
        bool big = order == '>' && dtype.Value.SizeOf() > 1;
        return (dtype.Value, big);
    }

    private static string DecodeHeader(byte[] bytes, int major, string name)
    {
        if (major < 3) return Encoding.Latin1.GetString(bytes);
        try { return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
        catch (DecoderFallbackException) { throw Bad(name, "the version 3.0 header is not valid UTF-8"); }
    }

    private static unsafe void SwapBytes(byte* p, long count, int size)
    {
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(count - done, 1 << 28);
            switch (size)
            {
                case 2: { var s = new Span<ushort>((ushort*)p + done, n); BinaryPrimitives.ReverseEndianness(s, s); break; }
                case 4: { var s = new Span<uint>((uint*)p + done, n); BinaryPrimitives.ReverseEndianness(s, s); break; }
                case 8: { var s = new Span<ulong>((ulong*)p + done, n); BinaryPrimitives.ReverseEndianness(s, s); break; }
            }
            done += n;
        }
    }

    private static unsafe void NormalizeBools(byte* p, long count)
    {
        for (long i = 0; i < count; i++) if (p[i] > 1) p[i] = 1;
    }

    private static int ReadFully(Stream stream, Span<byte> buffer) => stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);

    private static string ShapeText(int[] shape) => shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";

    private static string Printable(string s) => new(s.Take(40).Select(c => c is >= ' ' and <= '~' ? c : '?').ToArray());

    private static InvalidDataException Bad(string name, string problem) => new($"{name}: {problem}");
}
