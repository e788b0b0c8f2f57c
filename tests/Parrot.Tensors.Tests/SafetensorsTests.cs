using System.Buffers.Binary;
using System.Text;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using F = Parrot.Tensors.Tests.SafetensorsFixtures;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The safetensors reader and writer: files written independently by tools/make_safetensors_fixtures.py
/// (values recomputed from the manifest), zero-copy loading and its lifetimes, conversion on load,
/// byte-exact writing, round trips of every dtype and layout, and every validation rule on hand-made
/// headers. Values must survive exactly.
/// </summary>
public class SafetensorsTests
{
    private string _temp = "";

    [SetUp]
    public void MakeFolder()
    {
        _temp = Path.Combine(Path.GetTempPath(), "parrot-st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_temp);
    }

    [TearDown]
    public void RemoveFolder()
    {
        try { Directory.Delete(_temp, recursive: true); } catch (IOException) { }
    }

    private string Temp(string name) => Path.Combine(_temp, name);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Temp(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ---------------- files written by the generator ----------------

    [Test]
    public void ReadsEveryTensorOfEveryFixture()
    {
        int checkedTensors = 0;
        foreach (var fixture in F.Files())
        {
            using var file = SafetensorsFile.Open(F.PathOf(fixture.File));
            Assert.That(file.Names, Is.EqualTo(fixture.Tensors.Select(t => t.Name)), $"{fixture.File}: names in file order");
            foreach (var expected in fixture.Tensors)
            {
                string what = $"{fixture.File}:{expected.Name}";
                var info = file.Info(expected.Name);
                Assert.That(info.FormatDType, Is.EqualTo(expected.DType), what);
                Assert.That(info.Shape.ToArray(), Is.EqualTo(expected.Shape), what);
                Assert.That(info.FileOffset, Is.EqualTo(expected.FileOffset), what);
                Assert.That(info.ByteLength, Is.EqualTo(expected.Bytes), what);
                Assert.That(info.DType, Is.EqualTo(expected.Ours), what);
                if (expected.Ours is not DType dtype) continue;
                using var scope = TensorScope.Begin();
                var t = file.Load(expected.Name);
                Assert.That(t.DType, Is.EqualTo(dtype), what);
                Assert.That(t.Shape.ToArray(), Is.EqualTo(expected.Shape), what);
                Assert.That(t.ToDoubleArray(), Is.EqualTo(expected.ExpectedValues()), what);
                checkedTensors++;
            }
        }
        Assert.That(checkedTensors, Is.GreaterThanOrEqualTo(20));
    }

    [Test]
    public void Bf16CheckpointLoadsBitExactAndAsFloat32()
    {
        var fixture = F.File("bf16_weights.safetensors");
        using var file = SafetensorsFile.Open(F.PathOf(fixture.File));
        foreach (var expected in fixture.Tensors)
        {
            using var scope = TensorScope.Begin();
            var bits = expected.Expect.GetProperty("bits").EnumerateArray().Select(b => (ushort)b.GetInt32()).ToArray();
            var floats = expected.Expect.GetProperty("values").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
            var bf16 = file.Load(expected.Name);
            Assert.That(bf16.ToBFloat16Bits(), Is.EqualTo(bits), expected.Name);
            var f32 = file.Load(expected.Name, DType.F32);
            Assert.That(f32.DType, Is.EqualTo(DType.F32));
            Assert.That(f32.ToArray<float>(), Is.EqualTo(floats), $"{expected.Name}: torch's float32 view of the bf16 values");
            var f64 = file.Load(expected.Name, DType.F64);
            Assert.That(f64.ToArray<double>(), Is.EqualTo(floats.Select(v => (double)v)), expected.Name);
        }
    }

    [Test]
    public void ConvertsOnLoadBetweenAllDtypes()
    {
        var fixture = F.File("mixed.safetensors");
        using var file = SafetensorsFile.Open(F.PathOf(fixture.File));
        DType[] targets = [DType.F32, DType.F64, DType.I64];
        foreach (var expected in fixture.Tensors)
        {
            foreach (var target in targets)
            {
                using var scope = TensorScope.Begin();
                var t = file.Load(expected.Name, target);
                Assert.That(t.DType, Is.EqualTo(target));
                if (target != expected.Ours && t.Count > 0) Assert.That(t.Storage, Is.InstanceOf<NativeStorage>(), "a converted tensor has its own memory");
                using var reference = file.Load(expected.Name);
                using var converted = reference.To(target);
                Assert.That(t.ToDoubleArray(), Is.EqualTo(converted.ToDoubleArray()), $"{expected.Name} as {target.Name()}");
            }
        }
    }

    [Test]
    public void MetadataIsKept()
    {
        using (var file = SafetensorsFile.Open(F.PathOf("mixed.safetensors")))
        {
            Assert.That(file.HasMetadata, Is.True);
            Assert.That(file.Metadata, Is.EqualTo(F.File("mixed.safetensors").Metadata));
            Assert.That(file.Metadata.Keys, Is.EqualTo(new[] { "format", "producer" }), "header order");
        }
        using (var file = SafetensorsFile.Open(F.PathOf("unaligned.safetensors")))
        {
            Assert.That(file.HasMetadata, Is.False);
            Assert.That(file.Metadata, Is.Empty);
        }
    }

    [Test]
    public void DtypesWeCannotLoadAreListedAndRefusedByName()
    {
        string path = F.PathOf("exotic_dtypes.safetensors");
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Count, Is.EqualTo(7));
        var int8 = file.Info("int8");
        Assert.That(int8.FormatDType, Is.EqualTo("I8"));
        Assert.That(int8.IsSupported, Is.False);
        Assert.That(int8.DType, Is.Null);
        Assert.That(file.Info("fp8").Shape.ToArray(), Is.EqualTo(new[] { 5 }));
        foreach (var name in new[] { "int8", "int16", "uint16", "uint32", "uint64", "fp8" })
        {
            var e = Assert.Throws<NotSupportedException>(() => file.Load(name).Dispose());
            Assert.That(e!.Message, Does.Contain(path).And.Contain($"'{name}'").And.Contain(file.Info(name).FormatDType).And.Contain("BF16"));
        }
        using var ok = file.Load("ok");
        Assert.That(ok.ToFloatArray(), Is.EqualTo(new[] { 0.5f, 1.5f }));
    }

    // ---------------- zero-copy and lifetimes ----------------

    [Test]
    public void AlignedTensorsAreViewsOfTheMappedFile()
    {
        long cpuBefore = MemoryStats.CpuBytesInUse, mappedBefore = MappedStorage.BytesInUse;
        using var file = SafetensorsFile.Open(F.PathOf("mixed.safetensors"));
        Assert.That(file.IsMapped, Is.False, "opening reads only the header");
        using var embed = file.Load("model.embed.weight");
        using var ids = file.Load("ids");
        using var mask = file.Load("mask");
        Assert.That(file.IsMapped, Is.True);
        foreach (var t in new[] { embed, ids, mask })
        {
            Assert.That(t.Storage, Is.InstanceOf<MappedStorage>());
            Assert.That(((MappedStorage)t.Storage).FilePath, Is.EqualTo(F.PathOf("mixed.safetensors")));
            Assert.That((long)t.DataPointer % t.ElementSize, Is.EqualTo(0), "aligned to its element size");
        }
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(cpuBefore), "mapped bytes are not allocator bytes");
        Assert.That(MappedStorage.BytesInUse - mappedBefore, Is.EqualTo(24 * 4 + 5 * 8 + 10));
        var info = file.Info("model.embed.weight");
        Assert.That(F.RawBytes(embed), Is.EqualTo(File.ReadAllBytes(file.Path).AsSpan((int)info.FileOffset, (int)info.ByteLength).ToArray()));
    }

    [Test]
    public void MisalignedTensorsAreCopied()
    {
        var fixture = F.File("unaligned.safetensors");
        using var file = SafetensorsFile.Open(F.PathOf(fixture.File));
        foreach (var expected in fixture.Tensors)
        {
            using var t = file.Load(expected.Name);
            int size = t.ElementSize;
            bool aligned = expected.FileOffset % size == 0;
            Assert.That(t.Storage, aligned ? Is.InstanceOf<MappedStorage>() : Is.InstanceOf<NativeStorage>(), expected.Name);
            Assert.That((long)t.DataPointer % size, Is.EqualTo(0), expected.Name);
            Assert.That(t.ToDoubleArray(), Is.EqualTo(expected.ExpectedValues()), expected.Name);
        }
        Assert.That(fixture.Tensors.Count(t => t.FileOffset % (t.DType is "F32" ? 4 : t.DType is "U8" or "BOOL" ? 1 : 8) != 0), Is.GreaterThanOrEqualTo(3),
            "the fixture really is misaligned");
    }

    [Test]
    public void TensorsOutliveTheReaderAndTheMappingGoesWithTheLast()
    {
        long live = MappedStorage.LiveCount;
        Tensor a, b;
        using (var file = SafetensorsFile.Open(F.PathOf("mixed.safetensors")))
        {
            a = file.Load("model.norm.weight");
            b = file.Load("positions");
        }
        using var view = a.Narrow(0, 1, 3);
        a.Dispose();
        Assert.That(view.ToFloatArray(), Is.EqualTo(new[] { 1.5f, 2f, 2.5f }), "a view keeps the mapping alive");
        Assert.That(b.ToLongArray(), Is.EqualTo(new long[] { 7, 4, 1, -2, -5, -8, -11 }));
        Assert.That(MappedStorage.LiveCount, Is.EqualTo(live + 2));
        b.Dispose();
        view.Dispose();
        Assert.That(MappedStorage.LiveCount, Is.EqualTo(live));
    }

    [Test]
    public void PastTheMappingBudgetLoadsCopy()
    {
        using var scope = TensorScope.Begin();
        var tensors = Enumerable.Range(0, 30).Select(i => new KeyValuePair<string, Tensor>($"t{i:D2}", Tensor.Full([3], i, DType.F32))).ToList();
        string path = Temp("many.safetensors");
        Safetensors.Save(path, tensors);
        long saved = MappedStorage.MaxLiveViews;
        MappedStorage.MaxLiveViews = MappedStorage.LiveCount + 10;
        try
        {
            using var file = SafetensorsFile.Open(path);
            var loaded = file.Names.Select(n => file.Load(n)).ToList();
            Assert.That(loaded.Count(t => t.Storage is MappedStorage), Is.EqualTo(10));
            Assert.That(loaded.Count(t => t.Storage is NativeStorage), Is.EqualTo(20));
            for (int i = 0; i < loaded.Count; i++) Assert.That(loaded[i].ToFloatArray(), Is.All.EqualTo((float)i));
        }
        finally
        {
            MappedStorage.MaxLiveViews = saved;
        }
        Assert.That(saved, Is.GreaterThanOrEqualTo(256).And.LessThan(1 << 24), "a quarter of vm.max_map_count");
    }

    [Test]
    public void WritingIntoALoadedTensorNeverChangesTheFile()
    {
        string path = Temp("cow.safetensors");
        File.Copy(F.PathOf("mixed.safetensors"), path);
        byte[] before = File.ReadAllBytes(path);
        using (var file = SafetensorsFile.Open(path))
        {
            using var t = file.Load("model.embed.weight");
            Assert.That(t.Storage, Is.InstanceOf<MappedStorage>());
            t.Fill(7);
            Assert.That(t.ToFloatArray(), Is.All.EqualTo(7f));
            using var again = file.Load("model.embed.weight");
            Assert.That(again.ToFloatArray()[1], Is.EqualTo(-2.75f), "another load has its own view: the write is private to the first");
        }
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
    }

    [Test]
    public void LoadsFromManyThreadsAtOnce()
    {
        using var file = SafetensorsFile.Open(F.PathOf("mixed.safetensors"));
        var expected = F.File("mixed.safetensors").Tensors.Where(t => t.Ours is not null).ToArray();
        Parallel.For(0, 200, i =>
        {
            var e = expected[i % expected.Length];
            using var t = file.Load(e.Name, i % 2 == 0 ? null : DType.F64);
            Assert.That(t.ToDoubleArray(), Is.EqualTo(e.ExpectedValues()));
        });
    }

    [Test]
    public void MisuseIsReportedClearly()
    {
        string path = F.PathOf("mixed.safetensors");
        var file = SafetensorsFile.Open(path);
        var missing = Assert.Throws<KeyNotFoundException>(() => file.Load("model.embed.weigth"));
        Assert.That(missing!.Message, Does.Contain(path).And.Contain("'model.embed.weigth'"));
        Assert.Throws<KeyNotFoundException>(() => file.Info("nope"));
        Assert.That(file.Contains("ids"), Is.True);
        Assert.That(file.Contains("nope"), Is.False);
        Assert.That(file.TryGetInfo("nope", out _), Is.False);
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.Load("ids"));
        Assert.Throws<ObjectDisposedException>(() => file.Load("empty.f32"));
        Assert.That(file.Info("ids").Shape.ToArray(), Is.EqualTo(new[] { 5 }), "the header stays readable");
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open(Temp("absent.safetensors")));
    }

    [Test]
    public void EmptyAndScalarTensorsLoad()
    {
        using var file = SafetensorsFile.Open(F.PathOf("mixed.safetensors"));
        using var empty = file.Load("empty.f32");
        Assert.That(empty.Shape.ToArray(), Is.EqualTo(new[] { 0, 3 }));
        using var emptyBf = file.Load("empty.f32", DType.BF16);
        Assert.That(emptyBf.DType, Is.EqualTo(DType.BF16));
        using var scalar = file.Load("scalar.f32");
        Assert.That(scalar.Rank, Is.EqualTo(0));
        Assert.That(scalar.Item(), Is.EqualTo(3.5));
    }

    [Test]
    public void BoolBytesOtherThanZeroAndOneAreNormalised()
    {
        string path = WriteFile("bools.safetensors", F.Make("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[5],\"data_offsets\":[0,5]}}", [0, 1, 2, 255, 0]));
        using var file = SafetensorsFile.Open(path);
        using var m = file.Load("m");
        Assert.That(m.Storage, Is.InstanceOf<NativeStorage>(), "copied, since the file's bytes are not valid Bool bytes");
        Assert.That(F.RawBytes(m), Is.EqualTo(new byte[] { 0, 1, 1, 1, 0 }));
    }

    // ---------------- writing ----------------

    [Test]
    public void WriterReproducesReferenceLayoutFilesByteForByte()
    {
        int compared = 0;
        foreach (var fixture in F.Files().Where(f => f.ReferenceLayout && f.Tensors.All(t => t.Ours is not null)))
        {
            byte[] original = File.ReadAllBytes(F.PathOf(fixture.File));
            using var file = SafetensorsFile.Open(F.PathOf(fixture.File));
            var tensors = file.Names.Reverse().Select(n => new KeyValuePair<string, Tensor>(n, file.Load(n))).ToList();
            try
            {
                using var stream = new MemoryStream();
                Safetensors.Write(stream, tensors, file.HasMetadata ? file.Metadata : null);
                Assert.That(stream.ToArray(), Is.EqualTo(original), fixture.File);
                string path = Temp(fixture.File);
                Safetensors.Save(path, tensors, file.HasMetadata ? file.Metadata : null);
                Assert.That(File.ReadAllBytes(path), Is.EqualTo(original), fixture.File);
                compared++;
            }
            finally
            {
                foreach (var (_, t) in tensors) t.Dispose();
            }
        }
        Assert.That(compared, Is.EqualTo(2));
    }

    [Test]
    public void WriterBytesMatchTheFormatSpelledOutByHand()
    {
        using var x = Tensor.FromArray(new float[] { 0, 1, 2, 3, 4, 5 }, 1, 2, 3);
        using var stream = new MemoryStream();
        Safetensors.Write(stream, [new("attn.0", x)]);
        string json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
        Assert.That(json.Length, Is.EqualTo(64), "already a multiple of 8: no padding");
        var data = new byte[24];
        for (int i = 0; i < 6; i++) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4 * i), i);
        Assert.That(stream.ToArray(), Is.EqualTo(F.Make(json, data)));

        using var empty = new MemoryStream();
        Safetensors.Write(empty, []);
        Assert.That(empty.ToArray(), Is.EqualTo(F.Make("{}      ")));

        using var meta = new MemoryStream();
        Safetensors.Write(meta, [], new Dictionary<string, string> { ["framework"] = "pt" });
        Assert.That(meta.ToArray(), Is.EqualTo(F.Make("{\"__metadata__\":{\"framework\":\"pt\"}}     ")));

        using var odd = new MemoryStream();
        using var y = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 1, 1, 2, 3);
        Safetensors.Write(odd, [new("attn0", y)]);
        byte[] bytes = odd.ToArray();
        Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(bytes), Is.EqualTo(72), "65 bytes of JSON padded to 72");
        Assert.That(Encoding.UTF8.GetString(bytes, 8, 72), Is.EqualTo("{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}" + new string(' ', 7)));
    }

    [Test]
    public void NamesAndMetadataAreEscapedAsSerdeJsonDoes()
    {
        using var x = Tensor.FromArray(new byte[] { 1 });
        var metadata = new Dictionary<string, string> { ["quote\"back\\slash"] = "tab\tnl\nctl\u0001del\u007f", ["ünï"] = "中文 😀 /" };
        using var stream = new MemoryStream();
        Safetensors.Write(stream, [new("a\"b\\c\u001fé", x)], metadata);
        byte[] bytes = stream.ToArray();
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' ');
        Assert.That(header, Is.EqualTo(
            "{\"__metadata__\":{\"quote\\\"back\\\\slash\":\"tab\\tnl\\nctl\\u0001del\u007f\",\"ünï\":\"中文 😀 /\"}," +
            "\"a\\\"b\\\\c\\u001fé\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"));
        string path = WriteFile("escaped.safetensors", bytes);
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Names, Is.EqualTo(new[] { "a\"b\\c\u001fé" }));
        Assert.That(file.Metadata, Is.EqualTo(metadata));
    }

    private static readonly DType[] AllTypes = [DType.F32, DType.F64, DType.BF16, DType.F16, DType.I32, DType.I64, DType.U8, DType.Bool];

    [Test]
    public void RoundTripsEveryDtypeShapeAndLayout([Values("contiguous", "transposed", "stepped")] string layout)
    {
        int[][] shapes = [[], [1], [7], [3, 17], [2, 3, 33], [0], [2, 0, 3], [1000]];
        using var scope = TensorScope.Begin();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var sources = new Dictionary<string, Tensor>();
        ulong seed = 11;
        foreach (var dtype in AllTypes)
        {
            foreach (var shape in shapes)
            {
                string name = $"{dtype.Name()}.{string.Join('x', shape)}";
                var source = IndexRef.Random(shape, dtype, seed++);
                sources[name] = source;
                tensors.Add(new(name, IndexRef.Layout(source, layout)));
            }
        }
        string path = Temp("round.safetensors");
        Safetensors.Save(path, tensors, new Dictionary<string, string> { ["layout"] = layout });
        Assert.That(Directory.GetFiles(_temp), Is.EqualTo(new[] { path }), "no temporary file is left behind");
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.DataStart % 8, Is.EqualTo(0), "the header is padded to 8 bytes");
        Assert.That(file.Metadata["layout"], Is.EqualTo(layout));
        Assert.That(file.Count, Is.EqualTo(tensors.Count));
        foreach (var (name, source) in sources)
        {
            var info = file.Info(name);
            Assert.That(info.FileOffset % source.ElementSize, Is.EqualTo(0), $"{name} is aligned in the file");
            var back = file.Load(name);
            Assert.That(back.DType, Is.EqualTo(source.DType), name);
            Assert.That(back.Shape.ToArray(), Is.EqualTo(source.Shape.ToArray()), name);
            Assert.That(F.RawBytes(back), Is.EqualTo(F.RawBytes(source)), name);
            if (back.Count > 0) Assert.That(back.Storage, Is.InstanceOf<MappedStorage>(), name);
        }
        // The reference order: dtypes widest first, names ascending within a dtype.
        var order = file.Tensors.Select(t => t.FormatDType).Distinct().ToArray();
        Assert.That(order, Is.EqualTo(new[] { "I64", "F64", "F32", "I32", "BF16", "F16", "U8", "BOOL" }));
    }

    [Test]
    public void SaveReplacesAtomicallyAndLeavesNothingOnFailure()
    {
        string path = Temp("model.safetensors");
        using var x = Tensor.Arange(6).Reshape(2, 3);
        Safetensors.Save(path, [new("x", x)]);
        byte[] first = File.ReadAllBytes(path);

        var disposed = Tensor.Zeros([2]);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Safetensors.Save(path, [new("x", x), new("gone", disposed)]));
        var lone = new Dictionary<string, string> { ["k"] = "\ud800" };
        var e = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, [new("x", x)], lone));
        Assert.That(e!.Message, Does.Contain("metadata value"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(first), "a failed save leaves the old file");
        Assert.That(Directory.GetFiles(_temp), Is.EqualTo(new[] { path }), "and no temporary file");

        using var y = Tensor.Ones([4], DType.BF16);
        Safetensors.Save(path, [new("y", y)]);
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Names, Is.EqualTo(new[] { "y" }));
    }

    [Test]
    public void SaveWhileTheOldFileIsMappedKeepsOldTensorsIntact()
    {
        string path = Temp("live.safetensors");
        using var x = Tensor.Arange(0, 8, 1, DType.F32);
        Safetensors.Save(path, [new("x", x)]);
        using var file = SafetensorsFile.Open(path);
        using var old = file.Load("x");
        using var z = Tensor.Zeros([8]);
        Safetensors.Save(path, [new("x", z)]);
        Assert.That(old.ToFloatArray(), Is.EqualTo(new float[] { 0, 1, 2, 3, 4, 5, 6, 7 }), "the rename left the mapped file's data alone");
        using var fresh = SafetensorsFile.Open(path);
        using var now = fresh.Load("x");
        Assert.That(now.ToFloatArray(), Is.All.EqualTo(0f));
    }

    [Test]
    public void WriterRefusesBadArguments()
    {
        using var x = Tensor.Zeros([2]);
        string path = Temp("bad.safetensors");
        var dup = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, [new("a", x), new("a", x)]));
        Assert.That(dup!.Message, Does.Contain("'a'").And.Contain("twice"));
        var reserved = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, [new("__metadata__", x)]));
        Assert.That(reserved!.Message, Does.Contain("reserved"));
        var nul = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, [new("n", null!)]));
        Assert.That(nul!.Message, Does.Contain("'n'").And.Contain("null"));
        var lone = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, [new("bad\udc00", x)]));
        Assert.That(lone!.Message, Does.Contain("not valid Unicode"));
        Assert.That(File.Exists(path), Is.False);
    }

    [Test]
    public void LoadAllReturnsEveryTensor()
    {
        var all = Safetensors.LoadAll(F.PathOf("mixed.safetensors"), DType.F64);
        try
        {
            Assert.That(all.Keys, Is.EquivalentTo(F.File("mixed.safetensors").Tensors.Select(t => t.Name)));
            Assert.That(all.Values.Select(t => t.DType), Is.All.EqualTo(DType.F64));
        }
        finally
        {
            foreach (var t in all.Values) t.Dispose();
        }
        Assert.Throws<NotSupportedException>(() => Safetensors.LoadAll(F.PathOf("exotic_dtypes.safetensors")));
    }

    // ---------------- validation ----------------

    private const string Ok = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    /// <summary>Headers (with 8 data bytes unless the case says otherwise) and a fragment their error must contain.</summary>
    private static IEnumerable<TestCaseData> BadHeaders()
    {
        TestCaseData Case(string name, string header, string fragment, string? tensor = null, int dataBytes = 8) =>
            new TestCaseData(header, dataBytes, fragment, tensor).SetName($"Refuses_{name}");

        yield return Case("EmptyHeader", "", "empty");
        yield return Case("NotJson", "{\"a\":", "not valid JSON");
        yield return Case("Garbage", "hello", "not valid JSON");
        yield return Case("RootArray", "[1,2]", "must be a JSON object");
        yield return Case("RootString", "\"x\"", "must be a JSON object");
        yield return Case("TrailingJson", "{} {}", "not valid JSON", dataBytes: 0);
        yield return Case("TrailingNul", "{}\0", "not valid JSON", dataBytes: 0);
        yield return Case("Comment", "{/*c*/}", "not valid JSON", dataBytes: 0);
        yield return Case("DuplicateName", "{\"w\":" + Ok + ",\"w\":" + Ok + "}", "appears twice", "w", dataBytes: 8);
        yield return Case("DuplicateByEscape", "{\"w\":" + Ok + ",\"\\u0077\":" + Ok + "}", "appears twice", "w");
        yield return Case("DuplicateMetadata", "{\"__metadata__\":{},\"__metadata__\":{},\"w\":" + Ok + "}", "__metadata__ appears twice");
        yield return Case("DuplicateMetadataKey", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"},\"w\":" + Ok + "}", "'k' twice");
        yield return Case("MetadataNotObject", "{\"__metadata__\":[],\"w\":" + Ok + "}", "must be an object");
        yield return Case("MetadataValueNumber", "{\"__metadata__\":{\"k\":1},\"w\":" + Ok + "}", "must be a string");
        yield return Case("EntryNotObject", "{\"w\":[1]}", "must be an object", "w");
        yield return Case("DuplicateField", "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "'dtype' appears twice", "w");
        yield return Case("MissingDtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "no 'dtype'", "w");
        yield return Case("MissingShape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "no 'shape'", "w");
        yield return Case("MissingOffsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", "no 'data_offsets'", "w");
        yield return Case("DtypeNumber", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", "'dtype' must be a string", "w");
        yield return Case("UnknownDtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype 'F33'", "w");
        yield return Case("LowerCaseDtype", "{\"w\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype", "w");
        yield return Case("ShapeNotArray", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", "'shape' must be an array", "w");
        yield return Case("NegativeDim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "non-negative integers", "w");
        yield return Case("FractionalDim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "non-negative integers", "w");
        yield return Case("ExponentDim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", "non-negative integers", "w");
        yield return Case("StringDim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", "non-negative integers", "w");
        yield return Case("HugeDim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,0],\"data_offsets\":[0,0]}}", "larger than", "w", 0);
        yield return Case("DimPast2To64", "{\"w\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,8]}}", "non-negative integers", "w");
        yield return Case("ShapeOverflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647,0],\"data_offsets\":[0,0]}}", "more elements", "w", 0);
        yield return Case("BytesOverflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647,4],\"data_offsets\":[0,8]}}", "more elements", "w");
        yield return Case("SubByteRemainder", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", "whole number of bytes", "w", 1);
        yield return Case("ThreeOffsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", "two integers", "w");
        yield return Case("OneOffset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", "two integers", "w");
        yield return Case("NegativeOffset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", "non-negative integers", "w");
        yield return Case("BackwardsOffsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", "run backwards", "w");
        yield return Case("PastTheData", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "end past the data section", "w");
        yield return Case("HugeEnd", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551615]}}", "past the data section", "w");
        yield return Case("SizeMismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "needs 12 bytes", "w");
        yield return Case("WrongDtypeSize", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", "needs 16 bytes", "w");
        yield return Case("Overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "overlap", "b");
        yield return Case("SameRange", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", "overlap", "b");
        yield return Case("EmptyInsideAnother", "{\"a\":" + Ok + ",\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", "overlap", "e");
        yield return Case("Gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "belong to no tensor");
        yield return Case("TrailingBytes", "{\"a\":" + Ok + "}", "after the last tensor", dataBytes: 12);
        yield return Case("NoTensorsButData", "{}", "after the last tensor", dataBytes: 4);
        yield return Case("LoneSurrogate", "{\"\\ud800\":" + Ok + "}", "not valid Unicode");
        yield return Case("DeepNesting", "{\"w\":{\"x\":" + new string('[', 100) + new string(']', 100) + "," + Ok[1..] + "}", "not valid JSON");
    }

    [TestCaseSource(nameof(BadHeaders))]
    public void RefusesMalformedHeaders(string header, int dataBytes, string fragment, string? tensor)
    {
        string path = WriteFile("bad.safetensors", F.Make(header, new byte[dataBytes]));
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.That(e!.Message, Does.StartWith(path + ": "));
        Assert.That(e.Message, Does.Contain(fragment));
        Assert.That(e.Data["File"], Is.EqualTo(path));
        if (tensor is not null)
        {
            Assert.That(e.Message, Does.Contain($"tensor '{tensor}'"));
            Assert.That(e.Data["Tensor"], Is.EqualTo(tensor));
        }
    }

    [Test]
    public void RefusesBadLengthPrefixesAndShortFiles()
    {
        void Refused(string name, byte[] bytes, string fragment)
        {
            string path = WriteFile(name, bytes);
            var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose(), name);
            Assert.That(e!.Message, Does.StartWith(path + ": ").And.Contain(fragment), name);
        }
        Refused("empty.safetensors", [], "too few");
        Refused("seven.safetensors", [2, 0, 0, 0, 0, 0, 0], "too few");
        Refused("huge.safetensors", F.Make("{}", lengthPrefix: ulong.MaxValue), "more than the 100000000 allowed");
        Refused("big.safetensors", F.Make("{}", lengthPrefix: 100_000_001), "more than");
        Refused("long.safetensors", F.Make("{}      ", lengthPrefix: 9), "truncated");
        Refused("short.safetensors", F.Make("{}      ", lengthPrefix: 1), "not valid JSON");
        Refused("zero.safetensors", F.Make("", lengthPrefix: 0), "empty");
        var latin = F.Make("{\"w\":" + Ok + "}", new byte[8]);
        latin[10] = 0xE9;  // inside the name: a lone Latin-1 byte is not UTF-8
        Refused("latin1.safetensors", latin, "not valid UTF-8");
        var truncated = File.ReadAllBytes(F.PathOf("mixed.safetensors"));
        Refused("cut.safetensors", truncated[..^1], "end past the data section");
    }

    [Test]
    public void AcceptsWhatTheFormatAllows()
    {
        (string Header, int Data)[] good =
        [
            ("{}", 0),
            ("  {}  ", 0),
            ("{\"__metadata__\":null,\"w\":" + Ok + "}", 8),
            ("{\"w\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\",\"future\":{\"x\":[1,2,{}]}}}", 8),
            ("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},\"a\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 8),
            ("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},\"w\":" + Ok + ",\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8),
            ("{\"x\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]},\"y\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[2,5]},\"z\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[5,8]}}", 8),
            ("{\"\\u00e9\\n\":" + Ok + "}", 8),
        ];
        for (int i = 0; i < good.Length; i++)
        {
            string path = WriteFile($"good{i}.safetensors", F.Make(good[i].Header, new byte[good[i].Data]));
            using var file = SafetensorsFile.Open(path);
            foreach (var info in file.Tensors.Where(t => t.IsSupported))
            {
                using var t = file.Load(info.Name);
                Assert.That(t.Count, Is.EqualTo(info.ElementCount), good[i].Header);
            }
        }
        using var unicode = SafetensorsFile.Open(Temp("good7.safetensors"));
        Assert.That(unicode.Names, Is.EqualTo(new[] { "é\n" }));
        using var reordered = SafetensorsFile.Open(Temp("good4.safetensors"));
        Assert.That(reordered.Names, Is.EqualTo(new[] { "a", "b" }), "names in data order");
    }

    [Test]
    public void FileThatChangedBeforeMappingIsRefused()
    {
        string path = Temp("changing.safetensors");
        File.Copy(F.PathOf("mixed.safetensors"), path);
        using var file = SafetensorsFile.Open(path);
        using (var append = new FileStream(path, FileMode.Append)) append.WriteByte(0);
        var e = Assert.Throws<InvalidDataException>(() => file.Load("ids"));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("changed"));
    }
}
