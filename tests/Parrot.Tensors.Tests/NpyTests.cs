using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The .npy reader and writer: round trips of every dtype and layout, files numpy wrote (the committed
/// fixtures of tools/make_npy_fixtures.py, whose values the test recomputes from the manifest), hand-made
/// headers, and a mutation fuzz. Values must survive exactly.
/// </summary>
public class NpyTests
{
    private static string FixtureFolder => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "npy");

    private string _temp = "";

    [SetUp]
    public void MakeFolder()
    {
        _temp = Path.Combine(Path.GetTempPath(), "parrot-npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_temp);
    }

    [TearDown]
    public void RemoveFolder()
    {
        try { Directory.Delete(_temp, recursive: true); } catch (IOException) { }
    }

    // ---------------- round trips ----------------

    private static readonly DType[] StoredTypes = [DType.F32, DType.F64, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    [Test]
    public void RoundTripsEveryDtypeShapeAndLayout(
        [ValueSource(nameof(StoredTypes))] DType dtype,
        [Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[], [1], [7], [3, 17], [2, 3, 33], [0], [2, 0, 3], [1000]];
        ulong seed = 1;
        foreach (var shape in shapes)
        {
            using var scope = TensorScope.Begin();
            var source = IndexRef.Random(shape, dtype, seed++);
            var x = IndexRef.Layout(source, layout);
            string path = Path.Combine(_temp, $"t{seed}.npy");
            Npy.Write(path, x);
            var back = Npy.Read(path);
            Assert.That(back.DType, Is.EqualTo(dtype));
            Assert.That(back.Shape.ToArray(), Is.EqualTo(shape));
            Assert.That(back.ToDoubleArray(), Is.EqualTo(source.ToDoubleArray()), $"shape {IndexRef.Text(shape)}");
            AssertNumpyLayout(File.ReadAllBytes(path));
        }
        Assert.That(Directory.GetFiles(_temp).All(f => f.EndsWith(".npy", StringComparison.Ordinal)), Is.True, "no temporary file is left behind");
    }

    [Test]
    public void BFloat16IsWrittenAsExactFloat32()
    {
        using var scope = TensorScope.Begin();
        var x = IndexRef.Random([4, 9], DType.BF16, 5).Transpose();
        using var stream = new MemoryStream();
        Npy.Write(stream, x);
        Assert.That(Encoding.Latin1.GetString(stream.ToArray()), Does.Contain("'descr': '<f4'"));
        stream.Position = 0;
        var back = Npy.Read(stream);
        Assert.That(back.DType, Is.EqualTo(DType.F32));
        using var again = back.To(DType.BF16);
        using var original = x.Contiguous();
        Assert.That(again.ToBFloat16Bits(), Is.EqualTo(original.ToBFloat16Bits()));
    }

    [Test]
    public void SpecialFloatsSurvive()
    {
        using var scope = TensorScope.Begin();
        var values = new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, float.Epsilon, float.MaxValue };
        using var stream = new MemoryStream();
        Npy.Write(stream, Tensor.FromArray(values));
        stream.Position = 0;
        var back = Npy.Read(stream).ToArray<float>();
        Assert.That(back.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(values.Select(BitConverter.SingleToInt32Bits)));
    }

    [Test]
    public void OverwritesAtomicallyAndNamesTheFileOnErrors()
    {
        using var scope = TensorScope.Begin();
        string path = Path.Combine(_temp, "weights.npy");
        Npy.Write(path, Tensor.Ones([3]));
        Npy.Write(path, Tensor.Full([2, 2], 5.0, DType.F64));
        Assert.That(Npy.Read(path).ToArray<double>(), Is.EqualTo(new double[] { 5, 5, 5, 5 }));
        Assert.That(Directory.GetFiles(_temp).Select(Path.GetFileName), Is.EqualTo(new[] { "weights.npy" }));
        string bad = Path.Combine(_temp, "bad.npy");
        File.WriteAllBytes(bad, Encoding.ASCII.GetBytes("not numpy at all"));
        var ex = Assert.Throws<InvalidDataException>(() => Npy.Read(bad));
        Assert.That(ex!.Message, Does.StartWith(bad).And.Contain("magic"));
    }

    /// <summary>Data starts at a multiple of 64 bytes and the header ends in '\n', as numpy writes.</summary>
    private static void AssertNumpyLayout(byte[] file)
    {
        int major = file[6];
        int headerLength = major == 1 ? BitConverter.ToUInt16(file, 8) : BitConverter.ToInt32(file, 8);
        int dataStart = (major == 1 ? 10 : 12) + headerLength;
        Assert.That(dataStart % 64, Is.EqualTo(0));
        Assert.That(file[dataStart - 1], Is.EqualTo((byte)'\n'));
    }

    // ---------------- files numpy wrote ----------------

    private sealed record Fixture(string File, string Descr, int[] Shape, bool FortranOrder, int[] Version, string Formula,
        double Scale, double Offset, long Mod);

    private static IEnumerable<Fixture> ValidFixtures()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureFolder, "manifest.json")));
        foreach (var e in doc.RootElement.GetProperty("valid").EnumerateArray())
        {
            yield return new Fixture(
                e.GetProperty("file").GetString()!,
                e.GetProperty("descr").GetString()!,
                e.GetProperty("shape").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                e.GetProperty("fortran_order").GetBoolean(),
                e.GetProperty("version").EnumerateArray().Select(v => v.GetInt32()).ToArray(),
                e.GetProperty("formula").GetString()!,
                e.TryGetProperty("scale", out var s) ? s.GetDouble() : 0,
                e.TryGetProperty("offset", out var o) ? o.GetDouble() : 0,
                e.TryGetProperty("mod", out var m) ? m.GetInt64() : 0);
        }
    }

    private static DType DTypeOfDescr(string descr) => descr[1..] switch
    {
        "f4" => DType.F32, "f8" => DType.F64, "f2" => DType.F16, "i4" => DType.I32, "i8" => DType.I64, "u1" => DType.U8, "b1" => DType.Bool,
        _ => throw new ArgumentException(descr),
    };

    private static double Expected(Fixture f, long i) => f.Formula switch
    {
        "linear" => i * f.Scale + f.Offset,
        "modular" => (i * (long)f.Scale + (long)f.Offset) % f.Mod,
        "bool" => i % f.Mod == 0 ? 1 : 0,
        _ => throw new ArgumentException(f.Formula),
    };

    [Test]
    public void ReadsEveryFileNumpyWrote()
    {
        var fixtures = ValidFixtures().ToArray();
        Assert.That(fixtures, Has.Length.GreaterThanOrEqualTo(15));
        foreach (var f in fixtures)
        {
            using var t = Npy.Read(Path.Combine(FixtureFolder, f.File));
            Assert.That(t.DType, Is.EqualTo(DTypeOfDescr(f.Descr)), f.File);
            Assert.That(t.Shape.ToArray(), Is.EqualTo(f.Shape), f.File);
            Assert.That(t.IsContiguous, Is.True, f.File);
            var expected = Enumerable.Range(0, (int)IndexRef.Count(f.Shape)).Select(i => Expected(f, i)).ToArray();
            if (t.DType == DType.I64)
                Assert.That(t.ToArray<long>(), Is.EqualTo(expected.Select(v => (long)v).ToArray()), f.File);
            else
                Assert.That(t.ToDoubleArray(), Is.EqualTo(expected), f.File);
        }
        Assert.That(fixtures.Any(f => f.FortranOrder) && fixtures.Any(f => f.Descr[0] == '>') &&
                    fixtures.Any(f => f.Version[0] == 2) && fixtures.Any(f => f.Version[0] == 3), Is.True, "the fixture set covers each feature");
    }

    [Test]
    public void WritesTheBytesNumpyWrites()
    {
        // For C-order little-endian version 1.0 fixtures, reading and writing back gives numpy's exact bytes.
        int compared = 0;
        foreach (var f in ValidFixtures().Where(f => !f.FortranOrder && f.Descr[0] != '>' && f.Version[0] == 1))
        {
            string path = Path.Combine(FixtureFolder, f.File);
            using var t = Npy.Read(path);
            using var stream = new MemoryStream();
            Npy.Write(stream, t);
            Assert.That(stream.ToArray(), Is.EqualTo(File.ReadAllBytes(path)), f.File);
            compared++;
        }
        Assert.That(compared, Is.GreaterThanOrEqualTo(10));
    }

    [Test]
    public void RefusesUnsupportedFilesNumpyWrote()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureFolder, "manifest.json")));
        foreach (var e in doc.RootElement.GetProperty("invalid").EnumerateArray())
        {
            string path = Path.Combine(FixtureFolder, e.GetProperty("file").GetString()!);
            var ex = Assert.Throws<InvalidDataException>(() => Npy.Read(path));
            Assert.That(ex!.Message, Does.StartWith(path).And.Contain(e.GetProperty("message_contains").GetString()!));
        }
    }

    // ---------------- hand-made headers ----------------

    /// <summary>A .npy file with the given header text (padded numpy-style) and data bytes.</summary>
    private static byte[] Make(string header, byte[] data, int major = 1, bool pad = true)
    {
        int prefix = major == 1 ? 10 : 12;
        if (pad)
        {
            int total = (prefix + header.Length + 1 + 63) / 64 * 64;
            header = header.PadRight(total - prefix - 1) + "\n";
        }
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0 };
        var text = major == 3 ? Encoding.UTF8.GetBytes(header) : Encoding.Latin1.GetBytes(header);
        if (major == 1) bytes.AddRange(BitConverter.GetBytes((ushort)text.Length));
        else bytes.AddRange(BitConverter.GetBytes(text.Length));
        bytes.AddRange(text);
        bytes.AddRange(data);
        return bytes.ToArray();
    }

    private static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    private static Tensor ReadBytes(byte[] file, string name = "test.npy") => Npy.Read(new MemoryStream(file), name);

    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }")]
    [TestCase("{'shape': (2,), 'descr': '<f4', 'fortran_order': False}")]
    [TestCase("{\"fortran_order\": False, \"shape\": (2, ), \"descr\": \"<f4\"}")]
    [TestCase("  {  'descr' :'<f4' ,'fortran_order':False,'shape':( 2 , ) , }  ")]
    [TestCase("{u'descr': u'<f4', u'fortran_order': False, u'shape': (2L,)}")]
    [TestCase("{'descr': 'f4', 'fortran_order': False, 'shape': (1, 2)}")]
    [TestCase("{'descr': '=f4', 'fortran_order': True, 'shape': (2, 1), }")]
    [TestCase("{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (2,),\n}")]
    public void AcceptsHeaderSpellingsNumpyAccepts(string header)
    {
        using var t = ReadBytes(Make(header, Floats(1.5f, -2f)));
        Assert.That(t.ToArray<float>(), Is.EqualTo(new[] { 1.5f, -2f }));
    }

    [Test]
    public void ReadsUnpaddedHeadersAndEveryVersion([Values(1, 2, 3)] int major)
    {
        using var t = ReadBytes(Make("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", Floats(3f), major, pad: false));
        Assert.That(t.ToArray<float>(), Is.EqualTo(new[] { 3f }));
    }

    [Test]
    public void NormalisesBoolBytes()
    {
        using var t = ReadBytes(Make("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", [0, 1, 7]));
        Assert.That(RawBytes(t), Is.EqualTo(new byte[] { 0, 1, 1 }));
    }

    [TestCase("{'descr': '<f4', 'fortran_order': False}", "no 'shape'")]
    [TestCase("{'descr': '<f4', 'shape': (2,)}", "no 'fortran_order'")]
    [TestCase("{'fortran_order': False, 'shape': (2,)}", "no 'descr'")]
    [TestCase("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "twice")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected key 'extra'")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "not a tuple")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "tuple")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "negative")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999,)}", "larger than")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647, 2147483647)}", "too many elements")]
    [TestCase("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "True or False")]
    [TestCase("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", "True or False")]
    [TestCase("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "expected")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "expected")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "after the closing")]
    [TestCase("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", "not supported")]
    [TestCase("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", "not supported")]
    [TestCase("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", "structured")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "unexpected bytes")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", "truncated")]
    [TestCase("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", "truncated")]
    [TestCase("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\0", "after the closing")]
    public void RefusesBadHeadersNamingTheFile(string header, string problem)
    {
        var ex = Assert.Throws<InvalidDataException>(() => ReadBytes(Make(header, Floats(1, 2)), "fixture-x.npy"));
        Assert.That(ex!.Message, Does.StartWith("fixture-x.npy: ").And.Contain(problem));
    }

    [Test]
    public void RefusesBadPrefixes()
    {
        var good = Make("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", Floats(1));
        Check(good[..5], "too short");
        var magic = (byte[])good.Clone(); magic[1] = (byte)'X';
        Check(magic, "magic");
        var version = (byte[])good.Clone(); version[6] = 4;
        Check(version, "version 4.0");
        var minor = (byte[])good.Clone(); minor[7] = 1;
        Check(minor, "version 1.1");
        Check(good[..9], "header length");
        var longHeader = (byte[])good.Clone(); longHeader[8] = 0xFF; longHeader[9] = 0xFF;
        Check(longHeader, "header claims 65535 bytes");
        var v2 = Make("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", Floats(1), major: 2);
        v2[8] = v2[9] = v2[10] = v2[11] = 0xFF;
        Check(v2, "more than");
        var v3 = Make("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", Floats(1), major: 3);
        v3[20] = 0xC3; v3[21] = 0x28;   // an invalid UTF-8 sequence inside the header
        Check(v3, "UTF-8");

        static void Check(byte[] file, string problem)
        {
            var ex = Assert.Throws<InvalidDataException>(() => ReadBytes(file, "prefix.npy"));
            Assert.That(ex!.Message, Does.StartWith("prefix.npy: ").And.Contain(problem));
        }
    }

    [Test]
    public void NonSeekableTruncatedStreamIsAnError()
    {
        var file = Make("{'descr': '<f8', 'fortran_order': False, 'shape': (4,)}", new byte[20]);
        using var stream = new ForwardOnlyStream(file);
        var ex = Assert.Throws<InvalidDataException>(() => Npy.Read(stream, "pipe"));
        Assert.That(ex!.Message, Does.StartWith("pipe: ").And.Contain("ends early"));
        var whole = Make("{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", BitConverter.GetBytes(1.25).Concat(BitConverter.GetBytes(-3.0)).ToArray());
        using var ok = new ForwardOnlyStream(whole);
        using var t = Npy.Read(ok, "pipe");
        Assert.That(t.ToArray<double>(), Is.EqualTo(new[] { 1.25, -3.0 }));
    }

    private sealed class ForwardOnlyStream(byte[] data) : Stream
    {
        private int _pos;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count)
        {
            // Hand out at most 7 bytes at a time, as a pipe might.
            int n = Math.Min(Math.Min(count, 7), data.Length - _pos);
            Array.Copy(data, _pos, buffer, offset, n);
            _pos += n;
            return n;
        }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    // ---------------- mutation fuzz ----------------

    [Test]
    public void MutatedFilesReadCorrectlyOrFailCleanly()
    {
        var seeds = ValidFixtures().Select(f => File.ReadAllBytes(Path.Combine(FixtureFolder, f.File))).ToList();
        using (var scope = TensorScope.Begin())
        {
            using var stream = new MemoryStream();
            Npy.Write(stream, IndexRef.Random([3, 5], DType.F64, 9));
            seeds.Add(stream.ToArray());
        }
        var rng = new Random(20240601);
        var clock = Stopwatch.StartNew();
        int reads = 0, errors = 0;
        string[] tokens = ["'", "\"", ",", ")", "(", ":", "}", "{", " ", "-1", "0", "99999999999", "True", "False", "'shape'", "'descr'", "<f8", ">i4", "|b1", "L", "\\", "\n", "\0"];
        for (int trial = 0; trial < 4000; trial++)
        {
            var original = seeds[rng.Next(seeds.Count)];
            var bytes = Mutate(original, rng, tokens, out bool dataOnly);
            string name = $"fuzz-{trial}.npy";
            Tensor? t = null;
            try
            {
                t = trial % 50 == 0 ? ReadFile(bytes, name) : Npy.Read(new MemoryStream(bytes), name);
                reads++;
                // A successful read must be consistent: its data is exactly the tail of the file.
                long dataBytes = t.Count * t.ElementSize;
                Assert.That(dataBytes, Is.LessThanOrEqualTo(bytes.Length), name);
                if (dataOnly && t.IsContiguous && t.DType != DType.Bool && !IsBigEndianOrFortran(bytes))
                    Assert.That(RawBytes(t), Is.EqualTo(bytes[^(int)dataBytes..]), name);
            }
            catch (InvalidDataException e)
            {
                errors++;
                Assert.That(e.Message, Does.Contain(name), "the error names the file");
            }
            catch (Exception e) when (e is not AssertionException)
            {
                Assert.Fail($"{name}: {e.GetType().Name} escaped the reader: {e.Message}");
            }
            finally { t?.Dispose(); }
        }
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(10), "the fuzz must not hang");
        Assert.That(errors, Is.GreaterThan(1000));
        Assert.That(reads, Is.GreaterThan(100));
        TestContext.Out.WriteLine($"fuzz: {reads} clean reads, {errors} clean errors in {clock.ElapsedMilliseconds} ms");
    }

    private static unsafe byte[] RawBytes(Tensor t) => new ReadOnlySpan<byte>((void*)t.DataPointer, checked((int)(t.Count * t.ElementSize))).ToArray();

    private Tensor ReadFile(byte[] bytes, string name)
    {
        string path = Path.Combine(_temp, name);
        File.WriteAllBytes(path, bytes);
        try { return Npy.Read(path); }
        finally { File.Delete(path); }
    }

    private static bool IsBigEndianOrFortran(byte[] bytes)
    {
        string head = Encoding.Latin1.GetString(bytes, 0, Math.Min(bytes.Length, 200));
        return head.Contains("'>") || head.Contains("True");
    }

    /// <summary>One random corruption: flipped bits, overwritten or inserted bytes, truncation, a header token swap.</summary>
    private static byte[] Mutate(byte[] original, Random rng, string[] tokens, out bool dataOnly)
    {
        var b = (byte[])original.Clone();
        int headerEnd = original[6] == 1 ? 10 + BitConverter.ToUInt16(original, 8) : 12 + BitConverter.ToInt32(original, 8);
        dataOnly = false;
        switch (rng.Next(7))
        {
            case 0: // flip one bit anywhere
            {
                int i = rng.Next(b.Length);
                b[i] ^= (byte)(1 << rng.Next(8));
                dataOnly = i >= headerEnd;
                return b;
            }
            case 1: // overwrite a few header bytes
                for (int k = rng.Next(1, 4); k > 0; k--) b[rng.Next(Math.Min(b.Length, headerEnd))] = (byte)rng.Next(256);
                return b;
            case 2: // truncate
                return b[..rng.Next(b.Length)];
            case 3: // append junk
                return b.Concat(Enumerable.Range(0, rng.Next(1, 9)).Select(_ => (byte)rng.Next(256))).ToArray();
            case 4: // replace a stretch of the header text with a token (the length field is left as is)
            {
                int at = rng.Next(10, Math.Max(11, headerEnd - 1));
                var token = Encoding.Latin1.GetBytes(tokens[rng.Next(tokens.Length)]);
                for (int k = 0; k < token.Length && at + k < b.Length; k++) b[at + k] = token[k];
                return b;
            }
            case 5: // change the header length field
            {
                int delta = rng.Next(-70, 70);
                if (original[6] == 1) { ushort len = (ushort)Math.Clamp(BitConverter.ToUInt16(b, 8) + delta, 0, ushort.MaxValue); BitConverter.GetBytes(len).CopyTo(b, 8); }
                else BitConverter.GetBytes(BitConverter.ToInt32(b, 8) + delta).CopyTo(b, 8);
                return b;
            }
            default: // overwrite data bytes
            {
                if (b.Length <= headerEnd) return b;
                for (int k = rng.Next(1, 4); k > 0; k--) b[rng.Next(headerEnd, b.Length)] = (byte)rng.Next(256);
                dataOnly = true;
                return b;
            }
        }
    }
}
