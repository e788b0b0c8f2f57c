using System.Text;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using F = Parrot.Tensors.Tests.SafetensorsFixtures;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Model directories: the sharded fixture written by tools/make_safetensors_fixtures.py the way
/// transformers lays one out, lookups across shards, lazy mapping, the index's validation (shapes of the
/// JSON, paths that must stay inside the folder, disagreements between index and shards), and the sharded
/// writer, which must reproduce the fixture byte for byte and clean up after earlier saves.
/// </summary>
public class SafetensorsCheckpointTests
{
    private string _temp = "";

    [SetUp]
    public void MakeFolder()
    {
        _temp = Path.Combine(Path.GetTempPath(), "parrot-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_temp);
    }

    [TearDown]
    public void RemoveFolder()
    {
        try { Directory.Delete(_temp, recursive: true); } catch (IOException) { }
    }

    private static string ShardedFolder => F.PathOf("sharded");

    private static (string Shard, F.FixtureTensor Tensor)[] ShardedTensors() =>
        F.Manifest.GetProperty("sharded").GetProperty("shards").EnumerateArray()
            .SelectMany(s => F.ReadTensors(s.GetProperty("tensors")).Select(t => (s.GetProperty("file").GetString()!, t)))
            .ToArray();

    /// <summary>A private copy of the sharded fixture, to corrupt.</summary>
    private string CopyOfSharded()
    {
        string folder = Path.Combine(_temp, "model");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(ShardedFolder)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        return folder;
    }

    [Test]
    public void ReadsTheShardedFixtureByName()
    {
        using var ckpt = SafetensorsCheckpoint.Open(ShardedFolder);
        Assert.That(ckpt.IsSharded, Is.True);
        Assert.That(ckpt.IndexPath, Is.EqualTo(Path.Combine(ShardedFolder, SafetensorsCheckpoint.IndexFileName)));
        Assert.That(ckpt.Files.Select(Path.GetFileName), Is.EquivalentTo(new[] { "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors" }));
        Assert.That(ckpt.IndexMetadata["total_size"], Is.EqualTo("304"));
        Assert.That(ckpt.Metadata["format"], Is.EqualTo("pt"));
        var tensors = ShardedTensors();
        Assert.That(ckpt.Names, Is.EquivalentTo(tensors.Select(t => t.Tensor.Name)));
        foreach (var (shard, expected) in tensors)
        {
            var info = ckpt.Info(expected.Name);
            Assert.That(Path.GetFileName(info.File), Is.EqualTo(shard), expected.Name);
            Assert.That(info.Shape.ToArray(), Is.EqualTo(expected.Shape));
            using var t = ckpt.Load(expected.Name);
            Assert.That(t.ToDoubleArray(), Is.EqualTo(expected.ExpectedValues()), expected.Name);
            using var f = ckpt.Load(expected.Name, DType.F32);
            Assert.That(f.DType, Is.EqualTo(DType.F32));
        }
        Assert.That(ckpt.Contains("lm_head.weight"), Is.True);
        Assert.That(ckpt.TryGetInfo("lm_head.bias", out _), Is.False);
        var missing = Assert.Throws<KeyNotFoundException>(() => ckpt.Load("lm_head.bias"));
        Assert.That(missing!.Message, Does.Contain("'lm_head.bias'").And.Contain(SafetensorsCheckpoint.IndexFileName));
    }

    [Test]
    public void ShardsAreMappedOnlyWhenATensorIsLoaded()
    {
        string folder = CopyOfSharded();
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        var shards = ckpt.Readers;
        Assert.That(shards.Count(s => s.IsMapped), Is.EqualTo(0), "opening reads headers only");
        using (var t = ckpt.Load("lm_head.weight")) { }
        Assert.That(shards.Count(s => s.IsMapped), Is.EqualTo(1));
        Assert.That(shards.Single(s => s.IsMapped).Path, Does.EndWith("model-00003-of-00003.safetensors"));
    }

    [Test]
    public void OpensDirectoriesFilesAndIndexesAlike()
    {
        string folder = Path.Combine(_temp, "single");
        Directory.CreateDirectory(folder);
        File.Copy(F.PathOf("mixed.safetensors"), Path.Combine(folder, SafetensorsCheckpoint.SingleFileName));
        using (var dir = SafetensorsCheckpoint.Open(folder))
        {
            Assert.That(dir.IsSharded, Is.False);
            Assert.That(dir.Names, Has.Count.EqualTo(11));
            Assert.That(dir.Metadata["producer"], Is.EqualTo("make_safetensors_fixtures"));
            Assert.That(dir.IndexMetadata, Is.Empty);
            using var ids = dir.Load("ids", DType.F64);
            Assert.That(ids.ToDoubleArray()[0], Is.EqualTo(-6e9));
        }
        using (var file = SafetensorsCheckpoint.Open(F.PathOf("unaligned.safetensors"))) Assert.That(file.Count, Is.EqualTo(5));
        using (var index = SafetensorsCheckpoint.Open(Path.Combine(ShardedFolder, SafetensorsCheckpoint.IndexFileName))) Assert.That(index.Count, Is.EqualTo(7));

        // Both present: transformers takes model.safetensors, and so do we.
        string both = CopyOfSharded();
        File.Copy(F.PathOf("mixed.safetensors"), Path.Combine(both, SafetensorsCheckpoint.SingleFileName));
        Assert.That(SafetensorsCheckpoint.Locate(both), Is.EqualTo(Path.Combine(both, SafetensorsCheckpoint.SingleFileName)));

        string empty = Path.Combine(_temp, "empty");
        Directory.CreateDirectory(empty);
        File.WriteAllBytes(Path.Combine(empty, "adapter_model.safetensors"), []);
        var none = Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(empty));
        Assert.That(none!.Message, Does.Contain(SafetensorsCheckpoint.SingleFileName).And.Contain(SafetensorsCheckpoint.IndexFileName).And.Contain("adapter_model.safetensors"));
        Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(Path.Combine(_temp, "nowhere")));
    }

    [Test]
    public void ShardsMayBeLinksIntoACacheOutsideTheFolder()
    {
        // The Hugging Face hub cache keeps blobs elsewhere and links them into the snapshot folder.
        string blobs = Path.Combine(_temp, "blobs");
        string snapshot = Path.Combine(_temp, "snapshot");
        Directory.CreateDirectory(blobs);
        Directory.CreateDirectory(snapshot);
        foreach (var file in Directory.GetFiles(ShardedFolder))
        {
            string blob = Path.Combine(blobs, Guid.NewGuid().ToString("N"));
            File.Copy(file, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), blob);
        }
        using var ckpt = SafetensorsCheckpoint.Open(snapshot);
        using var t = ckpt.Load("model.norm.weight");
        Assert.That(t.ToFloatArray(), Is.EqualTo(new[] { 0.5f, 1f, 1.5f, 2f }));
    }

    // ---------------- index validation ----------------

    private static IEnumerable<TestCaseData> BadIndexes()
    {
        const string shard1 = "model-00001-of-00003.safetensors";
        TestCaseData Case(string name, Func<string, string> edit, string fragment, string? tensor = null) =>
            new TestCaseData(edit, fragment, tensor).SetName($"RefusesIndex_{name}");

        yield return Case("NotJson", _ => "{\"weight_map\": {", "not valid JSON");
        yield return Case("NotObject", _ => "[]", "must be a JSON object");
        yield return Case("NoWeightMap", _ => "{\"metadata\": {}}", "no \"weight_map\"");
        yield return Case("WeightMapArray", _ => "{\"weight_map\": []}", "must be an object");
        yield return Case("ShardNotString", j => j.Replace($"\"{shard1}\"", "1"), "must be a shard file name", "model.embed_tokens.weight");
        yield return Case("DuplicateName", j => j.Replace("\"model.norm.weight\"", "\"model.norm.weight\": \"x\", \"model.norm.weight\""), "appears twice", "model.norm.weight");
        yield return Case("DuplicateTopKey", j => j.Replace("\"metadata\"", "\"weight_map\": {}, \"metadata\""), "appears twice");
        yield return Case("MissingShard", j => j.Replace(shard1, "model-00001-of-00009.safetensors"), "does not exist", "model.embed_tokens.weight");
        yield return Case("EmptyShardName", j => j.Replace(shard1, ""), "empty shard file name", "model.embed_tokens.weight");
        yield return Case("ParentEscape", j => j.Replace(shard1, "../outside.safetensors"), "climbs out", "model.embed_tokens.weight");
        yield return Case("NestedEscape", j => j.Replace(shard1, "sub/../../outside.safetensors"), "climbs out", "model.embed_tokens.weight");
        yield return Case("BackslashEscape", j => j.Replace(shard1, "..\\\\outside.safetensors"), "climbs out", "model.embed_tokens.weight");
        yield return Case("Absolute", j => j.Replace(shard1, "/etc/hostname"), "absolute", "model.embed_tokens.weight");
        yield return Case("Folder", j => j.Replace(shard1, "."), "outside the checkpoint's folder", "model.embed_tokens.weight");
        yield return Case("WrongShard", j => j.Replace("\"lm_head.weight\": \"model-00003-of-00003.safetensors\"", "\"lm_head.weight\": \"model-00002-of-00003.safetensors\""),
            "has no tensor of that name", "lm_head.weight");
        yield return Case("NameNotInShard", j => j.Replace("\"lm_head.weight\"", "\"lm_head.weight\": \"model-00003-of-00003.safetensors\", \"lm_head.bias\""),
            "has no tensor of that name", "lm_head.bias");
        yield return Case("Unlisted", j => j.Replace("    \"model.norm.weight\": \"model-00002-of-00003.safetensors\"\n", "    \"zzz\": \"model-00002-of-00003.safetensors\"\n"),
            "has no tensor of that name", "zzz");
        yield return Case("Stale", j => j.Replace(",\n    \"model.norm.weight\": \"model-00002-of-00003.safetensors\"", ""), "does not list it", "model.norm.weight");
    }

    [TestCaseSource(nameof(BadIndexes))]
    public void RefusesBadIndexes(Func<string, string> edit, string fragment, string? tensor)
    {
        string folder = CopyOfSharded();
        string index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        string original = File.ReadAllText(index);
        string edited = edit(original);
        Assert.That(edited, Is.Not.EqualTo(original), "the edit applies");
        File.WriteAllText(index, edited);
        File.WriteAllBytes(Path.Combine(_temp, "outside.safetensors"), File.ReadAllBytes(Path.Combine(folder, "model-00001-of-00003.safetensors")));
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsCheckpoint.Open(folder).Dispose());
        Assert.That(e!.Message, Does.StartWith(index + ": ").And.Contain(fragment));
        if (tensor is not null) Assert.That(e.Message, Does.Contain($"tensor '{tensor}'"));
    }

    [Test]
    public void ATensorInTwoShardsIsRefused()
    {
        string folder = Path.Combine(_temp, "twice");
        Directory.CreateDirectory(folder);
        using var x = Tensor.Zeros([2]);
        Safetensors.Save(Path.Combine(folder, "a.safetensors"), [new("x", x), new("y", x)]);
        Safetensors.Save(Path.Combine(folder, "b.safetensors"), [new("y", x), new("z", x)]);
        File.WriteAllText(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName),
            "{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsCheckpoint.Open(folder).Dispose());
        Assert.That(e!.Message, Does.Contain("tensor 'y'").And.Contain("\"b.safetensors\" holds it too").And.Contain("a.safetensors"));
    }

    [Test]
    public void ABadShardIsReportedByItsOwnName()
    {
        string folder = CopyOfSharded();
        string shard = Path.Combine(folder, "model-00002-of-00003.safetensors");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..^4]);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsCheckpoint.Open(folder).Dispose());
        Assert.That(e!.Message, Does.StartWith(shard + ": "));
    }

    // ---------------- writing ----------------

    [Test]
    public void SaveReproducesTheShardedFixtureByteForByte()
    {
        var sharded = F.Manifest.GetProperty("sharded");
        long maxShard = sharded.GetProperty("max_shard_bytes").GetInt64();
        var order = sharded.GetProperty("save_order").EnumerateArray().Select(e => e.GetString()!).ToArray();
        using var source = SafetensorsCheckpoint.Open(ShardedFolder);
        var tensors = order.Select(n => new KeyValuePair<string, Tensor>(n, source.Load(n))).ToList();
        try
        {
            string folder = Path.Combine(_temp, "saved");
            var written = SafetensorsCheckpoint.Save(folder, tensors, maxShard);
            Assert.That(written.Select(Path.GetFileName), Is.EqualTo(Directory.GetFiles(ShardedFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal)));
            foreach (var file in Directory.GetFiles(ShardedFolder))
                Assert.That(File.ReadAllBytes(Path.Combine(folder, Path.GetFileName(file))), Is.EqualTo(File.ReadAllBytes(file)), Path.GetFileName(file));
            Assert.That(Directory.GetFiles(folder), Has.Length.EqualTo(4), "no temporary files");
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    [Test]
    public void SaveRoundTripsAndCleansUpEarlierCheckpoints()
    {
        using var scope = TensorScope.Begin();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        for (int i = 0; i < 6; i++)
            tensors.Add(new($"layers.{i}.weight", Tensor.Normal([16, 8], (ulong)i + 1, dtype: i % 2 == 0 ? DType.BF16 : DType.F32).Transpose()));
        var metadata = new Dictionary<string, string> { ["step"] = "100" };
        string folder = Path.Combine(_temp, "ckpt");
        string stray = Path.Combine(folder, "config.json");
        Directory.CreateDirectory(folder);
        File.WriteAllText(stray, "{}");

        var sharded = SafetensorsCheckpoint.Save(folder, tensors, maxShardBytes: 800, metadata);
        Assert.That(sharded, Has.Count.EqualTo(4), "3 shards (a 256-byte bf16 and a 512-byte float tensor each, 800-byte limit) and the index");
        AssertReadsBack(folder, tensors, metadata, sharded: true);

        var single = SafetensorsCheckpoint.Save(folder, tensors, metadata: metadata);
        Assert.That(single, Is.EqualTo(new[] { Path.Combine(folder, SafetensorsCheckpoint.SingleFileName) }));
        Assert.That(Directory.GetFiles(folder).Select(Path.GetFileName).Order(), Is.EqualTo(new[] { "config.json", SafetensorsCheckpoint.SingleFileName }),
            "the shards and index of the earlier save are gone, other files stay");
        AssertReadsBack(folder, tensors, metadata, sharded: false);

        var again = SafetensorsCheckpoint.Save(folder, tensors, maxShardBytes: 2000);
        Assert.That(again, Has.Count.EqualTo(3), "5 tensors of 1792 bytes, the last alone, and the index");
        Assert.That(File.Exists(Path.Combine(folder, SafetensorsCheckpoint.SingleFileName)), Is.False, "a stale single file would shadow the index");
        AssertReadsBack(folder, tensors, null, sharded: true);
        Assert.That(Directory.GetFiles(folder), Has.Length.EqualTo(4));
    }

    private static void AssertReadsBack(string folder, List<KeyValuePair<string, Tensor>> tensors, Dictionary<string, string>? metadata, bool sharded)
    {
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        Assert.That(ckpt.IsSharded, Is.EqualTo(sharded));
        Assert.That(ckpt.Metadata["format"], Is.EqualTo("pt"), "transformers needs it");
        if (metadata is not null) Assert.That(ckpt.Metadata["step"], Is.EqualTo("100"));
        if (sharded) Assert.That(ckpt.IndexMetadata["total_size"], Is.EqualTo(tensors.Sum(t => t.Value.Count * t.Value.ElementSize).ToString()));
        Assert.That(ckpt.Names, Is.EquivalentTo(tensors.Select(t => t.Key)));
        foreach (var (name, t) in tensors)
        {
            using var back = ckpt.Load(name);
            Assert.That(back.DType, Is.EqualTo(t.DType));
            Assert.That(F.RawBytes(back), Is.EqualTo(F.RawBytes(t)), name);
        }
    }

    [Test]
    public void IndexIsWrittenAsPythonWritesIt()
    {
        using var x = Tensor.Zeros([2]);
        string folder = Path.Combine(_temp, "py");
        var tensors = new List<KeyValuePair<string, Tensor>> { new("b", x), new("a\"é😀", x), new("\ue000", x), new("\U0001F600", x) };
        SafetensorsCheckpoint.Save(folder, tensors, maxShardBytes: 8, new Dictionary<string, string> { ["note"] = "tab\t" });
        string index = File.ReadAllText(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName), Encoding.ASCII);
        // What json.dumps(index, indent=2, sort_keys=True) + "\n" prints: keys by code point, so U+E000
        // sorts before U+1F600 although its UTF-16 form sorts after; non-ASCII escaped.
        Assert.That(index, Is.EqualTo(
            "{\n  \"metadata\": {\n    \"note\": \"tab\\t\",\n    \"total_size\": 32\n  },\n  \"weight_map\": {\n" +
            "    \"a\\\"\\u00e9\\ud83d\\ude00\": \"model-00002-of-00004.safetensors\",\n" +
            "    \"b\": \"model-00001-of-00004.safetensors\",\n" +
            "    \"\\ue000\": \"model-00003-of-00004.safetensors\",\n" +
            "    \"\\ud83d\\ude00\": \"model-00004-of-00004.safetensors\"\n  }\n}\n"));
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        Assert.That(ckpt.Names, Is.EquivalentTo(tensors.Select(t => t.Key)));
        Assert.That(ckpt.IndexMetadata["note"], Is.EqualTo("tab\t"));
    }

    [Test]
    public void SaveRefusesBadArgumentsBeforeWritingAnything()
    {
        using var x = Tensor.Zeros([2]);
        string folder = Path.Combine(_temp, "bad");
        Assert.Throws<ArgumentException>(() => SafetensorsCheckpoint.Save(folder, [new("x", x)], maxShardBytes: 0));
        Assert.Throws<ArgumentException>(() => SafetensorsCheckpoint.Save(folder, [new("x", x)], metadata: new Dictionary<string, string> { ["total_size"] = "1" }));
        Assert.Throws<ArgumentException>(() => SafetensorsCheckpoint.Save(folder, [new("x", x), new("x", x)], maxShardBytes: 4));
        Assert.Throws<ArgumentException>(() => SafetensorsCheckpoint.Save(folder, [new("x", x), new("y", x)], maxShardBytes: 4, new Dictionary<string, string> { ["k"] = "\udfff" }));
        Assert.That(Directory.Exists(folder), Is.False);
    }

    [Test]
    public void ResavingOverTheSameShardNamesNeverLeavesAMixedIndex()
    {
        using var a = Tensor.Full([4], 1);
        using var b = Tensor.Full([4], 2);
        string folder = Path.Combine(_temp, "same");
        SafetensorsCheckpoint.Save(folder, [new("a", a), new("b", b)], maxShardBytes: 16);
        using var a2 = Tensor.Full([4], 3);
        SafetensorsCheckpoint.Save(folder, [new("a", a2), new("b", b)], maxShardBytes: 16);
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        using var back = ckpt.Load("a");
        Assert.That(back.ToFloatArray(), Is.All.EqualTo(3f));
        Assert.That(Directory.GetFiles(folder), Has.Length.EqualTo(3));
    }
}
