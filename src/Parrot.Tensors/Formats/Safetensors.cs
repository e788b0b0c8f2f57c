namespace Parrot.Tensors.Formats;

/// <summary>
/// Hugging Face's safetensors format: 8 bytes of little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range (plus optional string metadata under <c>__metadata__</c>), then
/// the raw little-endian tensor bytes. Reading is lazy and zero-copy through <see cref="SafetensorsFile"/>;
/// a model directory with one file or with shards and an index is read through <see cref="SafetensorsCheckpoint"/>.
/// Writing produces byte-for-byte what the reference implementation writes (see <see cref="Save"/>).
/// </summary>
public static class Safetensors
{
    /// <summary>The reserved header key holding the string-to-string metadata.</summary>
    public const string MetadataKey = SafetensorsHeader.MetadataKey;

    /// <summary>The largest header a reader accepts (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = SafetensorsHeader.MaxHeaderBytes;

    /// <summary>Opens a safetensors file for lazy reading (see <see cref="SafetensorsFile.Open"/>).</summary>
    public static SafetensorsFile Open(string path) => SafetensorsFile.Open(path);

    /// <summary>
    /// Writes <paramref name="tensors"/> (any dtype, device and strides; non-contiguous ones are written in
    /// C order) to <paramref name="path"/> atomically: into a temporary file in the same folder, flushed,
    /// then renamed over the target, so a crash never leaves half a file.
    /// <para>The bytes are those the reference implementation writes: tensors sorted by dtype (widest
    /// first: I64, F64, F32, I32, BF16, F16, U8, BOOL) then by name, which aligns every tensor to its element
    /// size; compact JSON with <c>__metadata__</c> first; the header padded with spaces to a multiple of 8.
    /// Metadata entries keep the order in which <paramref name="metadata"/> enumerates them. A null
    /// <paramref name="metadata"/> writes no <c>__metadata__</c> key; an empty one writes an empty object.
    /// Tensors that share memory are written as separate copies.</para>
    /// </summary>
    /// <exception cref="ArgumentException">A name is null, repeated, <c>__metadata__</c> or not valid Unicode; a tensor is null.</exception>
    /// <exception cref="ObjectDisposedException">A tensor was disposed.</exception>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var items = SafetensorsWriter.Prepare(tensors, "Safetensors.Save");
        // Built before any file is created, so bad metadata leaves nothing behind.
        var header = SafetensorsWriter.BuildHeader(items, metadata, "Safetensors.Save");
        AtomicFile.Write(path, file => SafetensorsWriter.Write(file, items, header));
    }

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="stream"/> in the format (the same bytes <see cref="Save"/> writes).</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var items = SafetensorsWriter.Prepare(tensors, "Safetensors.Write");
        SafetensorsWriter.Write(stream, items, metadata, "Safetensors.Write");
    }

    /// <summary>
    /// Loads every tensor of <paramref name="path"/>, in file order, converted to <paramref name="dtype"/>
    /// when given. The caller disposes the tensors.
    /// </summary>
    /// <exception cref="NotSupportedException">A tensor has a dtype ParrotNative cannot load (nothing is returned).</exception>
    public static Dictionary<string, Tensor> LoadAll(string path, DType? dtype = null)
    {
        using var file = SafetensorsFile.Open(path);
        var result = new Dictionary<string, Tensor>(file.Count, StringComparer.Ordinal);
        try
        {
            foreach (var name in file.Names) result.Add(name, file.Load(name, dtype));
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }
}
