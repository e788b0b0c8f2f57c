using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;

namespace Parrot.Tensors.Formats;

/// <summary>
/// The validated header of a safetensors file: 8 bytes of little-endian header length N, N bytes of
/// UTF-8 JSON, then the data section. Everything a tensor read relies on is checked here, before any
/// tensor byte is touched:
/// <list type="bullet">
/// <item>N is at most <see cref="MaxHeaderBytes"/> and fits in the file; the header is valid UTF-8 and
/// well-formed JSON whose root is an object (trailing spaces, which writers pad with, are allowed);</item>
/// <item>no key appears twice, at any level (System.Text.Json and serde would silently keep the last one,
/// so a file could show one tensor to one tool and another to the next);</item>
/// <item><c>__metadata__</c>, when present, maps strings to strings (null counts as absent);</item>
/// <item>every other key is a tensor whose entry has a string <c>dtype</c> the format defines, a
/// <c>shape</c> of non-negative integers (each at most <see cref="int.MaxValue"/>, the element count
/// fitting a long), and <c>data_offsets</c> [begin, end] of two non-negative integers with
/// begin &lt;= end &lt;= the data section's length and end − begin = elements × dtype size (overflow-checked);
/// unknown fields in an entry are ignored, as the reference implementation ignores them;</item>
/// <item>sorted by offset, the tensors tile the data section exactly: no overlap, no gap and no trailing
/// bytes. The reference (Rust) implementation refuses gaps and trailing bytes too
/// (MetadataIncompleteBuffer), so a file we accept is one every conforming reader accepts.</item>
/// </list>
/// Any failure is an <see cref="InvalidDataException"/> naming the file and, where it applies, the tensor.
/// </summary>
internal sealed class SafetensorsHeader
{
    /// <summary>Largest header accepted, the reference implementation's limit (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>The reserved key holding the string-to-string metadata.</summary>
    public const string MetadataKey = "__metadata__";

    private SafetensorsHeader(long headerLength, long dataLength, SafetensorsTensorInfo[] tensors, Dictionary<string, string>? metadata)
    {
        HeaderLength = headerLength;
        DataLength = dataLength;
        Tensors = tensors;
        var byName = new Dictionary<string, SafetensorsTensorInfo>(tensors.Length, StringComparer.Ordinal);
        foreach (var t in tensors) byName.Add(t.Name, t);
        ByName = byName;
        Metadata = metadata;
    }

    /// <summary>N, the length of the JSON header in bytes.</summary>
    public long HeaderLength { get; }

    /// <summary>Offset of the data section from the start of the file.</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Length of the data section in bytes.</summary>
    public long DataLength { get; }

    /// <summary>The length the file had when the header was read.</summary>
    public long FileLength => DataStart + DataLength;

    /// <summary>The tensors in the order of their bytes in the file.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The tensors by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> ByName { get; }

    /// <summary>The <c>__metadata__</c> entries in header order, or null when the header has none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }

    /// <summary>Reads and validates the header of the open file <paramref name="handle"/>.</summary>
    public static SafetensorsHeader Read(SafeFileHandle handle, string path)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw Bad(path, null, $"the file has {fileLength} bytes, too few to hold the 8-byte header length of a safetensors file");
        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(handle, prefix, 0, path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        CheckLength(n, fileLength, path);
        var json = new byte[n];
        ReadExactly(handle, json, 8, path);
        return Parse(json, fileLength, path);
    }

    /// <summary>Validates a whole safetensors file held in memory (tests, small files).</summary>
    public static SafetensorsHeader FromBytes(ReadOnlySpan<byte> file, string path)
    {
        if (file.Length < 8)
            throw Bad(path, null, $"the file has {file.Length} bytes, too few to hold the 8-byte header length of a safetensors file");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        CheckLength(n, file.Length, path);
        return Parse(file.Slice(8, (int)n), file.Length, path);
    }

    private static void CheckLength(ulong n, long fileLength, string path)
    {
        if (n > MaxHeaderBytes)
            throw Bad(path, null, $"the header length prefix says {n} bytes, more than the {MaxHeaderBytes} allowed (a corrupt prefix, or not a safetensors file)");
        if ((long)n > fileLength - 8)
            throw Bad(path, null, $"truncated: the header length prefix says {n} bytes but only {fileLength - 8} bytes follow it");
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (buffer.Length > 0)
        {
            int got = RandomAccess.Read(handle, buffer, offset);
            if (got <= 0) throw Bad(path, null, "the file ended while its header was being read (was it truncated meanwhile?)");
            buffer = buffer[got..];
            offset += got;
        }
    }

    /// <summary>Validates the JSON header <paramref name="json"/> of a file of <paramref name="fileLength"/> bytes.</summary>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> json, long fileLength, string path)
    {
        long dataStart = 8L + json.Length;
        long dataLength = fileLength - dataStart;
        if (json.Length == 0) throw Bad(path, null, "the header is empty (it must be a JSON object)");
        if (!Utf8.IsValid(json)) throw Bad(path, null, "the header is not valid UTF-8");

        List<RawEntry> entries;
        Dictionary<string, string>? metadata;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
            (entries, metadata) = ParseRoot(ref reader, path);
        }
        catch (JsonException e)
        {
            throw Bad(path, null, $"the header is not valid JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            // Utf8JsonReader.GetString refuses escapes that decode to invalid UTF-16 (a lone \ud800, say).
            throw Bad(path, null, $"the header holds a string that is not valid Unicode: {e.Message}");
        }

        var tensors = new SafetensorsTensorInfo[entries.Count];
        for (int i = 0; i < entries.Count; i++) tensors[i] = Validate(entries[i], dataStart, dataLength, path);
        CheckTiling(tensors, dataLength, path);
        return new SafetensorsHeader(json.Length, dataLength, tensors, metadata);
    }

    /// <summary>An entry as read, before its numbers are checked against each other and the file.</summary>
    private sealed record RawEntry(string Name, string DType, ulong[] Shape, ulong Begin, ulong End);

    private static (List<RawEntry>, Dictionary<string, string>?) ParseRoot(ref Utf8JsonReader r, string path)
    {
        if (!r.Read()) throw Bad(path, null, "the header holds no JSON value");
        if (r.TokenType != JsonTokenType.StartObject)
            throw Bad(path, null, $"the header must be a JSON object, found {Describe(ref r)}");
        var entries = new List<RawEntry>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) break;
            string key = r.GetString()!;
            if (!seen.Add(key))
                throw key == MetadataKey
                    ? Bad(path, null, $"the key {MetadataKey} appears twice in the header")
                    : Bad(path, key, "the name appears twice in the header (readers would disagree on which entry is meant)");
            Next(ref r, path);
            if (key == MetadataKey) metadata = ParseMetadata(ref r, path);
            else entries.Add(ParseEntry(ref r, key, path));
        }
        if (r.Read()) throw Bad(path, null, "unexpected JSON after the header object");
        return (entries, metadata);
    }

    private static Dictionary<string, string>? ParseMetadata(ref Utf8JsonReader r, string path)
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartObject)
            throw Bad(path, null, $"{MetadataKey} must be an object mapping strings to strings, found {Describe(ref r)}");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return metadata;
            string key = r.GetString()!;
            if (metadata.ContainsKey(key)) throw Bad(path, null, $"{MetadataKey} has the key '{FormatText.Printable(key)}' twice");
            Next(ref r, path);
            if (r.TokenType != JsonTokenType.String)
                throw Bad(path, null, $"{MetadataKey} value of '{FormatText.Printable(key)}' must be a string, found {Describe(ref r)}");
            metadata.Add(key, r.GetString()!);
        }
    }

    private static RawEntry ParseEntry(ref Utf8JsonReader r, string name, string path)
    {
        if (r.TokenType != JsonTokenType.StartObject)
            throw Bad(path, name, $"its entry must be an object with dtype, shape and data_offsets, found {Describe(ref r)}");
        string? dtype = null;
        ulong[]? shape = null;
        ulong[]? offsets = null;
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) break;
            string field = r.GetString()!;
            Next(ref r, path);
            switch (field)
            {
                case "dtype":
                    if (dtype is not null) throw Bad(path, name, "'dtype' appears twice in its entry");
                    if (r.TokenType != JsonTokenType.String) throw Bad(path, name, $"'dtype' must be a string, found {Describe(ref r)}");
                    dtype = r.GetString()!;
                    break;
                case "shape":
                    if (shape is not null) throw Bad(path, name, "'shape' appears twice in its entry");
                    shape = ReadIntegers(ref r, name, "shape", path);
                    break;
                case "data_offsets":
                    if (offsets is not null) throw Bad(path, name, "'data_offsets' appears twice in its entry");
                    offsets = ReadIntegers(ref r, name, "data_offsets", path);
                    if (offsets.Length != 2)
                        throw Bad(path, name, $"'data_offsets' must hold two integers [begin, end], it holds {offsets.Length}");
                    break;
                default:
                    // The reference implementation ignores fields it does not know; so do we.
                    r.Skip();
                    break;
            }
        }
        if (dtype is null) throw Bad(path, name, "its entry has no 'dtype'");
        if (shape is null) throw Bad(path, name, "its entry has no 'shape'");
        if (offsets is null) throw Bad(path, name, "its entry has no 'data_offsets'");
        return new RawEntry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static ulong[] ReadIntegers(ref Utf8JsonReader r, string name, string field, string path)
    {
        if (r.TokenType != JsonTokenType.StartArray)
            throw Bad(path, name, $"'{field}' must be an array of non-negative integers, found {Describe(ref r)}");
        var values = new List<ulong>();
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndArray) return values.ToArray();
            // TryGetUInt64 refuses fractions, exponents, signs and values past 2^64 - 1.
            if (r.TokenType != JsonTokenType.Number || !r.TryGetUInt64(out ulong v))
                throw Bad(path, name, $"'{field}' must hold non-negative integers, found {Describe(ref r)}");
            values.Add(v);
        }
    }

    private static SafetensorsTensorInfo Validate(RawEntry e, long dataStart, long dataLength, string path)
    {
        if (!SafetensorsDTypes.TryGet(e.DType, out var dtype))
            throw Bad(path, e.Name, $"unknown dtype '{FormatText.Printable(e.DType)}'");
        var shape = new int[e.Shape.Length];
        long count = 1;
        bool overflow = false;
        for (int i = 0; i < shape.Length; i++)
        {
            ulong d = e.Shape[i];
            if (d > int.MaxValue)
                throw Bad(path, e.Name, $"dimension {i} of its shape is {d}, larger than the {int.MaxValue} a tensor dimension can be");
            shape[i] = (int)d;
            // Multiplied in order, as the reference does: a product that overflows on the way is refused
            // even if a later dimension is 0, which is also what Tensor's own shape check does.
            if (!overflow && d != 0 && count > long.MaxValue / (long)d) overflow = true;
            else if (!overflow) count *= (long)d;
        }
        if (overflow || count > long.MaxValue / dtype.Bits)
            throw Bad(path, e.Name, $"shape {Describe(e.Shape)} holds more elements than can be addressed");
        long bits = count * dtype.Bits;
        if (bits % 8 != 0)
            throw Bad(path, e.Name, $"shape {Describe(e.Shape)} of {dtype.Name} ({dtype.Bits}-bit elements) is not a whole number of bytes");
        long bytes = bits / 8;
        if (e.Begin > e.End)
            throw Bad(path, e.Name, $"data_offsets [{e.Begin}, {e.End}] run backwards");
        if (e.End > (ulong)dataLength)
            throw Bad(path, e.Name, $"data_offsets [{e.Begin}, {e.End}] end past the data section, which holds {dataLength} bytes (truncated file?)");
        long begin = (long)e.Begin, end = (long)e.End;
        if (end - begin != bytes)
            throw Bad(path, e.Name, $"shape {Describe(e.Shape)} of {dtype.Name} needs {bytes} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        return new SafetensorsTensorInfo(path, e.Name, dtype.Name, dtype.Ours, shape, count, begin, end, dataStart);
    }

    /// <summary>Checks that the tensors, sorted by offset, cover the data section exactly once; sorts <paramref name="tensors"/>.</summary>
    private static void CheckTiling(SafetensorsTensorInfo[] tensors, long dataLength, string path)
    {
        // A stable sort by (begin, end): zero-length tensors sit before a tensor starting at their offset.
        var sorted = tensors.Select((t, i) => (t, i)).OrderBy(x => x.t.DataBegin).ThenBy(x => x.t.DataEnd).ThenBy(x => x.i).Select(x => x.t).ToArray();
        sorted.CopyTo(tensors, 0);
        long covered = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in tensors)
        {
            if (t.DataBegin < covered)
                throw Bad(path, t.Name, $"its bytes [{t.DataBegin}, {t.DataEnd}) overlap those of tensor '{FormatText.Printable(previous!.Name)}' [{previous.DataBegin}, {previous.DataEnd})");
            if (t.DataBegin > covered)
                throw Bad(path, null, $"bytes [{covered}, {t.DataBegin}) of the data section belong to no tensor (a gap before tensor '{FormatText.Printable(t.Name)}'); the format requires the tensors to fill the data section");
            covered = t.DataEnd;
            previous = t;
        }
        if (covered != dataLength)
            throw Bad(path, null, $"the {dataLength - covered} bytes after the last tensor's data (from offset {covered} of the data section) belong to no tensor; the format requires the tensors to fill the data section exactly (truncated or padded file?)");
    }

    private static void Next(ref Utf8JsonReader r, string path)
    {
        if (!r.Read()) throw Bad(path, null, "the header ends inside a JSON value");
    }

    private static string Describe(ref Utf8JsonReader r) => r.TokenType switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => $"the number {FormatText.Printable(r.ValueSpan)}",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => r.TokenType.ToString(),
    };

    private static string Describe(ulong[] shape) => "[" + string.Join(", ", shape) + "]";

    private static InvalidDataException Bad(string path, string? tensor, string problem) => SafetensorsErrors.Bad(path, tensor, problem);
}
