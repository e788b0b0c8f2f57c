using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>
/// Serialises tensors in the safetensors format, byte for byte as the reference (Rust) implementation
/// does, so a file we write equals the one Python's <c>safetensors.torch.save_file</c> writes for the same
/// tensors:
/// <list type="bullet">
/// <item>tensors ordered by dtype, widest alignment first (I64, F64, F32, I32, BF16, F16, U8, BOOL, the
/// reference's enum order reversed), then by name compared as UTF-8 bytes; laid out back to back in that
/// order, each one starts at a multiple of its element size;</item>
/// <item>the header is compact JSON, <c>__metadata__</c> first when given (its entries in the caller's
/// order: the reference keeps them in a hash map, whose order is arbitrary), then each tensor as
/// <c>{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}</c>, strings escaped as serde_json escapes them
/// (quote, backslash and control characters only; other characters as raw UTF-8);</item>
/// <item>the header is padded with spaces to a multiple of 8 bytes, so the data section, which follows the
/// 8-byte length prefix, starts 8-byte aligned.</item>
/// </list>
/// </summary>
internal static class SafetensorsWriter
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>One tensor to write: its name's UTF-8 bytes, its format dtype and its data length.</summary>
    internal sealed record Item(string Name, byte[] NameUtf8, Tensor Tensor, SafetensorsDTypes.Entry DType, long Bytes);

    /// <summary>Checks names and tensors and puts them in the reference's order.</summary>
    public static List<Item> Prepare(IEnumerable<KeyValuePair<string, Tensor>> tensors, string op) => InFileOrder(Collect(tensors, op));

    /// <summary>Checks names and tensors, keeping the caller's order.</summary>
    public static List<Item> Collect(IEnumerable<KeyValuePair<string, Tensor>> tensors, string op)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var items = new List<Item>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null) throw new ArgumentException($"{op}: a tensor name is null");
            if (tensor is null) throw new ArgumentException($"{op}: tensor '{FormatText.Printable(name)}' is null");
            if (name == SafetensorsHeader.MetadataKey)
                throw new ArgumentException($"{op}: '{SafetensorsHeader.MetadataKey}' is reserved for the metadata and cannot name a tensor");
            if (!names.Add(name)) throw new ArgumentException($"{op}: the name '{FormatText.Printable(name)}' is given twice");
            tensor.EnsureAlive($"{op} '{FormatText.Printable(name)}'");
            items.Add(new Item(name, Utf8(name, op, "tensor name"), tensor, SafetensorsDTypes.Of(tensor.DType), tensor.Count * tensor.ElementSize));
        }
        return items;
    }

    /// <summary>A copy of <paramref name="items"/> in the reference's order: dtype (widest alignment first), then name as UTF-8 bytes.</summary>
    public static List<Item> InFileOrder(IEnumerable<Item> items)
    {
        var sorted = items.ToList();
        sorted.Sort(static (a, b) =>
        {
            int byDType = b.DType.Order.CompareTo(a.DType.Order);
            return byDType != 0 ? byDType : a.NameUtf8.AsSpan().SequenceCompareTo(b.NameUtf8);
        });
        return sorted;
    }

    /// <summary>The padded JSON header for <paramref name="items"/> (already in order), without the length prefix.</summary>
    public static byte[] BuildHeader(IReadOnlyList<Item> items, IReadOnlyDictionary<string, string>? metadata, string op)
    {
        var json = new ArrayBufferWriter<byte>(256 + items.Count * 96);
        Put(json, "{");
        bool first = true;
        if (metadata is not null)
        {
            Put(json, "\"" + SafetensorsHeader.MetadataKey + "\":{");
            bool firstEntry = true;
            foreach (var (key, value) in metadata)
            {
                if (key is null || value is null) throw new ArgumentException($"{op}: a metadata key or value is null");
                if (!firstEntry) Put(json, ",");
                PutString(json, Utf8(key, op, "metadata key"));
                Put(json, ":");
                PutString(json, Utf8(value, op, "metadata value"));
                firstEntry = false;
            }
            Put(json, "}");
            first = false;
        }
        long offset = 0;
        foreach (var item in items)
        {
            if (!first) Put(json, ",");
            first = false;
            PutString(json, item.NameUtf8);
            var sb = new StringBuilder(":{\"dtype\":\"").Append(item.DType.Name).Append("\",\"shape\":[");
            var shape = item.Tensor.Shape;
            for (int i = 0; i < shape.Length; i++)
            {
                if (i > 0) sb.Append(',');
                sb.Append(shape[i].ToString(CultureInfo.InvariantCulture));
            }
            sb.Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',')
              .Append((offset + item.Bytes).ToString(CultureInfo.InvariantCulture)).Append("]}");
            Put(json, sb.ToString());
            offset += item.Bytes;
        }
        Put(json, "}");

        int padded = (json.WrittenCount + 7) / 8 * 8;
        if (padded > SafetensorsHeader.MaxHeaderBytes)
            throw new ArgumentException($"{op}: the header would take {padded} bytes, more than the {SafetensorsHeader.MaxHeaderBytes} readers accept");
        var header = new byte[padded];
        json.WrittenSpan.CopyTo(header);
        header.AsSpan(json.WrittenCount).Fill((byte)' ');
        return header;
    }

    /// <summary>Writes the whole file (length prefix, header, data) to <paramref name="stream"/>; <paramref name="items"/> are in file order.</summary>
    public static void Write(Stream stream, IReadOnlyList<Item> items, IReadOnlyDictionary<string, string>? metadata, string op) =>
        Write(stream, items, BuildHeader(items, metadata, op));

    /// <summary>Writes the length prefix, the prepared <paramref name="header"/> and the data of <paramref name="items"/>.</summary>
    public static void Write(Stream stream, IReadOnlyList<Item> items, byte[] header)
    {
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach (var item in items) WriteData(stream, item.Tensor);
    }

    /// <summary>Writes a tensor's elements in C order, whatever its strides or device.</summary>
    private static unsafe void WriteData(Stream stream, Tensor tensor)
    {
        if (tensor.Count == 0) return;
        using var host = tensor.Device.Kind == DeviceKind.Cpu ? tensor.Contiguous() : tensor.To(Device.Cpu);
        long bytes = host.Count * host.ElementSize;
        byte* p = (byte*)host.DataPointer;
        for (long done = 0; done < bytes;)
        {
            int chunk = (int)Math.Min(bytes - done, 1 << 30);
            stream.Write(new ReadOnlySpan<byte>(p + done, chunk));
            done += chunk;
        }
    }

    private static byte[] Utf8(string s, string op, string what)
    {
        try { return StrictUtf8.GetBytes(s); }
        catch (EncoderFallbackException)
        {
            throw new ArgumentException($"{op}: {what} '{FormatText.Printable(s)}' is not valid Unicode (a lone surrogate) and cannot be written as UTF-8");
        }
    }

    private static void Put(ArrayBufferWriter<byte> json, string ascii)
    {
        var span = json.GetSpan(ascii.Length);
        for (int i = 0; i < ascii.Length; i++) span[i] = (byte)ascii[i];
        json.Advance(ascii.Length);
    }

    /// <summary>A JSON string as serde_json writes it: only '"', '\' and control characters are escaped.</summary>
    private static void PutString(ArrayBufferWriter<byte> json, ReadOnlySpan<byte> utf8)
    {
        const string hex = "0123456789abcdef";
        Put(json, "\"");
        foreach (byte b in utf8)
        {
            switch (b)
            {
                case (byte)'"': Put(json, "\\\""); break;
                case (byte)'\\': Put(json, "\\\\"); break;
                case (byte)'\b': Put(json, "\\b"); break;
                case (byte)'\f': Put(json, "\\f"); break;
                case (byte)'\n': Put(json, "\\n"); break;
                case (byte)'\r': Put(json, "\\r"); break;
                case (byte)'\t': Put(json, "\\t"); break;
                case < 0x20: Put(json, $"\\u00{hex[b >> 4]}{hex[b & 15]}"); break;
                default:
                    json.GetSpan(1)[0] = b;
                    json.Advance(1);
                    break;
            }
        }
        Put(json, "\"");
    }
}
