using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using F = Parrot.Tensors.Tests.SafetensorsFixtures;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Mutation fuzzing of the safetensors reader and of the checkpoint index, with fixed seeds. Every mutated
/// file goes through the real path (written to disk, opened, memory-mapped) and must either open, and then
/// load every tensor with exactly the bytes its header range names (so nothing is read out of bounds), or
/// be refused with an <see cref="InvalidDataException"/> whose message starts with the file's path. Any
/// other exception, a wrong value, a leaked mapping or a run past the time limit fails the test.
/// </summary>
public class SafetensorsFuzzTests
{
    private string _temp = "";

    [SetUp]
    public void MakeFolder()
    {
        _temp = F.NewScratchFolder("parrot-stfuzz-");
    }

    [TearDown]
    public void RemoveFolder()
    {
        try { Directory.Delete(_temp, recursive: true); } catch (IOException) { }
    }

    private static readonly string[] Tokens =
    [
        "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"F32\"", "\"BF16\"", "\"F64\"", "\"I8\"", "\"BOOL\"", "\"F4\"",
        "\"U64\"", "\"x\"", "[", "]", "{", "}", ",", ":", "\"", "\\", "0", "1", "-1", "8", "4294967296", "18446744073709551615",
        "18446744073709551616", "1e3", "2.5", "-0", "null", "true", "\"\\u0000\"", "\"\\ud800\"", "\"é\"", "[0,0]", "[]", "{}", " ", "\n",
    ];

    private static readonly byte[] InterestingBytes = "0123456789{}[]\":,-.e \\"u8.ToArray().Concat(new byte[] { 0, 0x7f, 0xc3, 0xff, 0x80 }).ToArray();

    [Test]
    public void MutatedFilesOpenCorrectlyOrFailCleanly()
    {
        var seeds = new List<byte[]>();
        foreach (var f in F.Files()) seeds.Add(File.ReadAllBytes(F.PathOf(f.File)));
        foreach (var f in Directory.GetFiles(F.PathOf("sharded"), "*.safetensors")) seeds.Add(File.ReadAllBytes(f));
        using (var scope = TensorScope.Begin())
        {
            using var stream = new MemoryStream();
            Safetensors.Write(stream, [
                new("a", IndexRef.Random([3, 5], DType.F64, 1)), new("b", IndexRef.Random([7], DType.F16, 2)),
                new("c", IndexRef.Random([2, 2], DType.Bool, 3)), new("d", IndexRef.Random([0, 4], DType.I32, 4)),
                new("e", IndexRef.Random([], DType.BF16, 5)), new("f", IndexRef.Random([9], DType.U8, 6)),
            ], new Dictionary<string, string> { ["k"] = "v" });
            seeds.Add(stream.ToArray());
        }

        var rng = new Random(20250611);
        long liveBefore = MappedStorage.LiveCount;
        var clock = Stopwatch.StartNew();
        int opened = 0, refused = 0, tensorsLoaded = 0, unsupported = 0;
        var kinds = new int[9];
        var reasons = new Dictionary<string, int>();
        const int Trials = 10_000;
        for (int trial = 0; trial < Trials; trial++)
        {
            var seed = seeds[rng.Next(seeds.Count)];
            int kind = rng.Next(kinds.Length);
            kinds[kind]++;
            var bytes = Mutate(seed, kind, rng);
            string path = Path.Combine(_temp, $"fuzz-{trial}.safetensors");
            File.WriteAllBytes(path, bytes);
            try
            {
                using var file = SafetensorsFile.Open(path);
                opened++;
                foreach (var info in file.Tensors)
                {
                    // Plain checks in this loop: NUnit's constraint machinery would dominate the run time.
                    if (info.FileOffset < file.DataStart || info.FileOffset + info.ByteLength > bytes.Length)
                        Assert.Fail($"{path}: {info} lies outside the data section");
                    if (!info.IsSupported)
                    {
                        Assert.Throws<NotSupportedException>(() => file.Load(info.Name).Dispose(), path);
                        unsupported++;
                        continue;
                    }
                    using var t = file.Load(info.Name);
                    if (!t.Shape.SequenceEqual(info.Shape)) Assert.Fail($"{path}: {info} loaded with shape {t.ShapeString()}");
                    var expected = bytes.AsSpan(checked((int)info.FileOffset), checked((int)info.ByteLength)).ToArray();
                    if (info.DType == DType.Bool) for (int i = 0; i < expected.Length; i++) expected[i] = expected[i] > 1 ? (byte)1 : expected[i];
                    if (!F.RawBytes(t).AsSpan().SequenceEqual(expected)) Assert.Fail($"{path}: {info} loaded other bytes than the file holds");
                    if (trial % 16 == 0)
                    {
                        using var converted = file.Load(info.Name, DType.F32);
                        if (converted.Count != t.Count) Assert.Fail($"{path}: {info} converted to {converted.Count} elements");
                    }
                    tensorsLoaded++;
                }
            }
            catch (InvalidDataException e)
            {
                refused++;
                if (!e.Message.StartsWith(path + ": ", StringComparison.Ordinal) || !Equals(e.Data["File"], path))
                    Assert.Fail($"the error does not name the file: {e.Message}");
                string reason = Reason(e.Message[(path.Length + 2)..]);
                reasons[reason] = reasons.GetValueOrDefault(reason) + 1;
            }
            catch (Exception e) when (e is not AssertionException)
            {
                Assert.Fail($"{path} (mutation {kind}): {e.GetType().Name} escaped the reader: {e}");
            }
            File.Delete(path);
        }
        clock.Stop();
        Assert.That(MappedStorage.LiveCount, Is.EqualTo(liveBefore), "every mapping was released");
        TestContext.Out.WriteLine($"fuzz: {Trials} files in {clock.ElapsedMilliseconds} ms: {opened} opened ({tensorsLoaded} tensors loaded and checked, " +
            $"{unsupported} unsupported-dtype refusals), {refused} refused; mutations per kind {string.Join(' ', kinds)}");
        foreach (var (reason, n) in reasons.OrderByDescending(kv => kv.Value)) TestContext.Out.WriteLine($"  {n,5}  {reason}");
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(30), "the fuzz must not hang (about 3 s on a quiet 2-core machine)");
        Assert.That(refused, Is.GreaterThan(3000));
        Assert.That(opened, Is.GreaterThan(1000));
        Assert.That(reasons.Count, Is.GreaterThan(25), "the mutations reach many different checks");
    }

    /// <summary>The kind of problem an error message reports, for the statistics: its words without names and numbers.</summary>
    private static string Reason(string message)
    {
        string s = System.Text.RegularExpressions.Regex.Replace(message, "'[^']*'|\"[^\"]*\"|\\[[^\\]]*\\]|\\d+", "#");
        int cut = s.IndexOfAny([':', '(', ';']);
        if (s.StartsWith("tensor #: ", StringComparison.Ordinal)) cut = s.IndexOfAny([':', '(', ';'], 10);
        return (cut > 0 ? s[..cut] : s).Trim();
    }

    /// <summary>One random corruption of a valid file, by kind.</summary>
    private static byte[] Mutate(byte[] seed, int kind, Random rng)
    {
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
        int headerEnd = 8 + headerLength;
        var b = (byte[])seed.Clone();
        switch (kind)
        {
            case 0: // flip one bit of the header
            {
                int i = 8 + rng.Next(headerLength);
                b[i] ^= (byte)(1 << rng.Next(8));
                return b;
            }
            case 1: // overwrite a header byte with a byte JSON cares about
                b[8 + rng.Next(headerLength)] = InterestingBytes[rng.Next(InterestingBytes.Length)];
                return b;
            case 2: // corrupt the length prefix
            {
                ulong n = (ulong)headerLength;
                ulong m = rng.Next(6) switch
                {
                    0 => n + (ulong)rng.Next(1, 17),
                    1 => n - (ulong)rng.Next(1, Math.Min(17, headerLength + 1)),
                    2 => (ulong)rng.NextInt64(),
                    3 => (ulong)(b.Length - 8),
                    4 => 0,
                    _ => n ^ (0xFFUL << (8 * rng.Next(8))),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(b, m);
                return b;
            }
            case 3: // truncate anywhere
                return b[..rng.Next(b.Length)];
            case 4: // splice a JSON token over a few header bytes, keeping the length prefix consistent
            {
                string header = Encoding.UTF8.GetString(seed, 8, headerLength);
                int at = rng.Next(header.Length + 1);
                int drop = Math.Min(rng.Next(0, 9), header.Length - at);
                return Rebuild(header[..at] + Tokens[rng.Next(Tokens.Length)] + header[(at + drop)..], seed, headerEnd);
            }
            case 5: // change one number of the header (a dimension or an offset)
            {
                string header = Encoding.UTF8.GetString(seed, 8, headerLength);
                var numbers = System.Text.RegularExpressions.Regex.Matches(header, "\\d+");
                if (numbers.Count == 0) return Rebuild(header + "x", seed, headerEnd);
                var m = numbers[rng.Next(numbers.Count)];
                long v = long.Parse(m.Value);
                string replacement = rng.Next(5) switch
                {
                    0 => (v + 1).ToString(),
                    1 => Math.Max(0, v - 1).ToString(),
                    2 => (v * 2).ToString(),
                    3 => rng.Next(0, 64).ToString(),
                    _ => "9223372036854775807",
                };
                return Rebuild(header[..m.Index] + replacement + header[(m.Index + m.Length)..], seed, headerEnd);
            }
            case 6: // structured: rename, retype, reshape or move one tensor, or drop one of its fields
                return Rebuild(MutateStructure(Encoding.UTF8.GetString(seed, 8, headerLength), rng), seed, headerEnd);
            case 7: // the data section: flip a byte (must still load, with the new byte), append or remove bytes
            {
                int dataLength = b.Length - headerEnd;
                int choice = rng.Next(3);
                if (choice == 0 && dataLength > 0) { b[headerEnd + rng.Next(dataLength)] ^= (byte)rng.Next(1, 256); return b; }
                if (choice == 1) return [.. b, .. new byte[rng.Next(1, 9)]];
                return b[..Math.Max(headerEnd, b.Length - rng.Next(1, 9))];
            }
            default: // unpadded or over-padded header, sometimes with a byte inserted before the data
            {
                string header = Encoding.UTF8.GetString(seed, 8, headerLength);
                string changed = rng.Next(2) == 0 ? header.TrimEnd(' ') : header + new string(' ', rng.Next(1, 9));
                var file = Rebuild(changed, seed, headerEnd);
                if (rng.Next(3) == 0)
                {
                    int at = 8 + Encoding.UTF8.GetByteCount(changed);
                    file = [.. file[..at], (byte)rng.Next(256), .. file[at..]];
                }
                return file;
            }
        }
    }

    private static string MutateStructure(string header, Random rng)
    {
        JsonObject root;
        try { root = JsonNode.Parse(header)!.AsObject(); }
        catch (System.Text.Json.JsonException) { return header; }
        var names = root.Select(kv => kv.Key).Where(k => k != "__metadata__").ToList();
        if (names.Count == 0) return "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        string name = names[rng.Next(names.Count)];
        var entry = root[name]!.AsObject();
        string[] dtypes = ["F32", "F64", "BF16", "F16", "I32", "I64", "U8", "BOOL", "I8", "U16", "F8_E4M3", "F4", "C64"];
        switch (rng.Next(8))
        {
            case 0: // a duplicate name, written textually since a JSON object cannot hold one
            {
                string other = names[rng.Next(names.Count)];
                string text = root.ToJsonString();
                return text.Replace($"\"{name}\":", $"\"{other}\":");
            }
            case 1:
                entry["dtype"] = dtypes[rng.Next(dtypes.Length)];
                break;
            case 2:
            {
                var shape = entry["shape"]!.AsArray();
                if (shape.Count > 0 && rng.Next(2) == 0) shape.RemoveAt(rng.Next(shape.Count));
                else shape.Add(rng.Next(3));
                break;
            }
            case 3:
            {
                // Swap the offsets of two tensors (same sizes keep the file valid, others do not), or make
                // one tensor a copy of another's entry (two tensors over the same bytes).
                string other = names[rng.Next(names.Count)];
                if (rng.Next(2) == 0)
                {
                    root[name] = root[other]!.DeepClone();
                    break;
                }
                var a = root[name]!["data_offsets"]!.DeepClone();
                root[name]!["data_offsets"] = root[other]!["data_offsets"]!.DeepClone();
                root[other]!["data_offsets"] = a;
                break;
            }
            case 4:
                entry.Remove(new[] { "dtype", "shape", "data_offsets" }[rng.Next(3)]);
                break;
            case 5:
                root["__metadata__"] = rng.Next(3) switch { 0 => new JsonObject { ["k"] = 1 }, 1 => new JsonArray(), _ => null };
                break;
            case 6:
                root.Remove(name);
                break;
            default:
                entry["extra"] = new JsonObject { ["nested"] = new JsonArray(1, 2, 3) };
                break;
        }
        return root.ToJsonString();
    }

    /// <summary>A file with <paramref name="header"/> (length prefix to match) and the seed's data section.</summary>
    private static byte[] Rebuild(string header, byte[] seed, int seedHeaderEnd)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + seed.Length - seedHeaderEnd];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
        json.CopyTo(file, 8);
        seed.AsSpan(seedHeaderEnd).CopyTo(file.AsSpan(8 + json.Length));
        return file;
    }

    [Test]
    public void MutatedIndexesOpenCorrectlyOrFailCleanly()
    {
        string folder = Path.Combine(_temp, "model");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(F.PathOf("sharded"))) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        File.Copy(F.PathOf("mixed.safetensors"), Path.Combine(_temp, "outside.safetensors"));
        string index = Path.Combine(folder, SafetensorsCheckpoint.IndexFileName);
        string original = File.ReadAllText(index);
        string[] shardNames = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
            "../outside.safetensors", "/etc/passwd", ".", "sub/", "", "model-00004-of-00003.safetensors", "./model-00001-of-00003.safetensors"];
        string[] tokens = [.. Tokens, .. shardNames.Select(n => $"\"{n}\""), "\"weight_map\"", "\"metadata\""];
        var rng = new Random(7);
        var clock = Stopwatch.StartNew();
        int opened = 0, refused = 0;
        const int Trials = 2000;
        for (int trial = 0; trial < Trials; trial++)
        {
            string text = MutateIndex(original, rng, tokens, shardNames);
            File.WriteAllText(index, text);
            try
            {
                using var ckpt = SafetensorsCheckpoint.Open(folder);
                opened++;
                foreach (var name in ckpt.Names)
                {
                    using var t = ckpt.Load(name);
                    if (t.Count != ckpt.Info(name).ElementCount) Assert.Fail($"{name}: wrong element count");
                }
            }
            catch (InvalidDataException e)
            {
                refused++;
                if (!e.Message.StartsWith(index + ": ", StringComparison.Ordinal)) Assert.Fail($"the error does not name the index: {e.Message}");
            }
            catch (Exception e) when (e is not AssertionException)
            {
                Assert.Fail($"trial {trial}: {e.GetType().Name} escaped SafetensorsCheckpoint.Open for index {text}: {e}");
            }
        }
        TestContext.Out.WriteLine($"index fuzz: {Trials} indexes in {clock.ElapsedMilliseconds} ms: {opened} opened, {refused} refused");
        Assert.That(refused, Is.GreaterThan(Trials / 4));
        Assert.That(opened, Is.GreaterThan(Trials / 10));
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(20), "the fuzz must not hang");
    }

    private static string MutateIndex(string original, Random rng, string[] tokens, string[] shardNames)
    {
        switch (rng.Next(8))
        {
            case 0:
            {
                int at = rng.Next(original.Length + 1);
                int drop = Math.Min(rng.Next(0, 12), original.Length - at);
                return original[..at] + tokens[rng.Next(tokens.Length)] + original[(at + drop)..];
            }
            case 1:
                return original[..rng.Next(original.Length + 1)];
            case 7: // a name twice, textually
            {
                var lines = original.Split('\n').ToList();
                int i = lines.FindIndex(l => l.Contains("safetensors\","));
                lines.Insert(i, lines[i]);
                return string.Join('\n', lines);
            }
        }
        var root = JsonNode.Parse(original)!.AsObject();
        var map = root["weight_map"]!.AsObject();
        var names = map.Select(kv => kv.Key).ToList();
        string name = names[rng.Next(names.Count)];
        switch (rng.Next(5))
        {
            case 0:
                map[name] = shardNames[rng.Next(shardNames.Length)];
                break;
            case 1:
                map.Remove(name);
                break;
            case 2:
                root["metadata"] = rng.Next(4) switch
                {
                    0 => new JsonObject { ["total_size"] = "many", ["nested"] = new JsonArray(1, new JsonObject()) },
                    1 => null,
                    2 => new JsonArray(),
                    _ => new JsonObject(),
                };
                break;
            case 3:
            {
                var shuffled = names.OrderBy(_ => rng.Next()).Select(n => KeyValuePair.Create(n, (JsonNode?)map[n]!.GetValue<string>())).ToList();
                root["weight_map"] = new JsonObject(shuffled);
                break;
            }
            default:
                root["future_key"] = new JsonObject { ["x"] = 1 };
                break;
        }
        return root.ToJsonString();
    }
}
