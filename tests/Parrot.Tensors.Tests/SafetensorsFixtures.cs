using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The committed fixtures of tools/make_safetensors_fixtures.py and their manifest, the expected values
/// recomputed from the manifest's formulas (never from our reader), and a maker of hand-written files.
/// </summary>
internal static class SafetensorsFixtures
{
    public static string Folder => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "safetensors");

    public static string PathOf(string file) => Path.Combine(Folder, file);

    /// <summary>One tensor as the generator described it.</summary>
    public sealed record FixtureTensor(string Name, string DType, int[] Shape, long FileOffset, long Bytes, JsonElement Expect)
    {
        public long Count => Shape.Aggregate(1L, (a, d) => a * d);

        public DType? Ours => DType switch
        {
            "F32" => Tensors.DType.F32,
            "F64" => Tensors.DType.F64,
            "F16" => Tensors.DType.F16,
            "BF16" => Tensors.DType.BF16,
            "I32" => Tensors.DType.I32,
            "I64" => Tensors.DType.I64,
            "U8" => Tensors.DType.U8,
            "BOOL" => Tensors.DType.Bool,
            _ => null,
        };

        /// <summary>The values the tensor holds, as doubles, rounded to its dtype.</summary>
        public double[] ExpectedValues()
        {
            string formula = Expect.GetProperty("formula").GetString()!;
            var values = new double[Count];
            for (long i = 0; i < Count; i++)
            {
                values[i] = formula switch
                {
                    "linear" => i * Expect.GetProperty("scale").GetDouble() + Expect.GetProperty("offset").GetDouble(),
                    "modular" => ((i * Expect.GetProperty("scale").GetInt64() + Expect.GetProperty("offset").GetInt64()) % Expect.GetProperty("mod").GetInt64()
                                  + Expect.GetProperty("mod").GetInt64()) % Expect.GetProperty("mod").GetInt64(),
                    "bool" => i % Expect.GetProperty("mod").GetInt64() == 0 ? 1 : 0,
                    "values" => Expect.GetProperty("values")[(int)i].GetDouble(),
                    _ => throw new InvalidOperationException($"{Name}: no values for formula {formula}"),
                };
            }
            return DType switch
            {
                "F32" => values.Select(v => (double)(float)v).ToArray(),
                "F16" => values.Select(v => (double)(Half)v).ToArray(),
                "BF16" => TestUtil.RoundBf16(values),
                "I32" or "I64" or "U8" => values.Select(v => Math.Round(v)).ToArray(),
                _ => values,
            };
        }
    }

    /// <summary>One fixture file of the manifest.</summary>
    public sealed record FixtureFile(string File, bool ReferenceLayout, Dictionary<string, string>? Metadata, FixtureTensor[] Tensors);

    private static JsonDocument? _manifest;

    public static JsonElement Manifest
    {
        get
        {
            _manifest ??= JsonDocument.Parse(System.IO.File.ReadAllBytes(PathOf("manifest.json")));
            return _manifest.RootElement;
        }
    }

    public static IEnumerable<FixtureFile> Files() => Manifest.GetProperty("files").EnumerateArray().Select(ReadFile);

    public static FixtureFile File(string name) => Files().Single(f => f.File == name);

    private static FixtureFile ReadFile(JsonElement f)
    {
        var meta = f.GetProperty("metadata");
        Dictionary<string, string>? metadata = meta.ValueKind == JsonValueKind.Null
            ? null
            : meta.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        return new FixtureFile(f.GetProperty("file").GetString()!, f.GetProperty("reference_layout").GetBoolean(), metadata, ReadTensors(f.GetProperty("tensors")));
    }

    public static FixtureTensor[] ReadTensors(JsonElement tensors) =>
        tensors.EnumerateArray().Select(t => new FixtureTensor(
            t.GetProperty("name").GetString()!,
            t.GetProperty("dtype").GetString()!,
            t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray(),
            t.GetProperty("file_offset").GetInt64(),
            t.GetProperty("bytes").GetInt64(),
            t.Clone())).ToArray();

    /// <summary>A safetensors file by hand: the length prefix (the header's length unless overridden), the header, the data.</summary>
    public static byte[] Make(string header, byte[]? data = null, ulong? lengthPrefix = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        data ??= [];
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthPrefix ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        return bytes;
    }

    /// <summary>
    /// A new empty folder for many small short-lived files: in /dev/shm when the machine has it, because
    /// on this machine's disk (ext4 mounted with discard) deleting or truncating a file costs ~2.5 ms.
    /// </summary>
    public static string NewScratchFolder(string prefix)
    {
        string root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        string folder = Path.Combine(root, prefix + Guid.NewGuid().ToString("N"));
        try { Directory.CreateDirectory(folder); }
        catch (UnauthorizedAccessException) { folder = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N")); Directory.CreateDirectory(folder); }
        return folder;
    }

    /// <summary>The raw bytes of a contiguous CPU tensor.</summary>
    public static unsafe byte[] RawBytes(Tensor t)
    {
        using var c = t.Contiguous();
        return new ReadOnlySpan<byte>((void*)c.DataPointer, checked((int)(c.Count * c.ElementSize))).ToArray();
    }
}
