using System.Text.Json.Nodes;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests.Training;

public class LlavaDatasetTests
{
    private static string WriteJson(string dir, JsonArray samples, string name = "data.json")
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, samples.ToJsonString());
        return path;
    }

    private static JsonObject Sample(string id, string? image, params (string From, string Value)[] turns)
    {
        var o = new JsonObject { ["id"] = id };
        if (image is not null) o["image"] = image;
        var conv = new JsonArray();
        foreach (var (f, v) in turns) conv.Add(new JsonObject { ["from"] = f, ["value"] = v });
        o["conversations"] = conv;
        return o;
    }

    [Test]
    public void TokenisesWithChatMlAndResolvesImages()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var ds = LlavaDataset.Load(json, images, Chat, DataOptions());
        Assert.That(ds.Examples, Has.Count.EqualTo(8));
        Assert.That(ds.Skipped, Is.Empty);

        var first = ds.Examples[0];
        Assert.That(first.Id, Is.EqualTo("en_0"));
        Assert.That(first.Language, Is.EqualTo("en"));
        Assert.That(first.ImagePath, Is.EqualTo(Path.GetFullPath(Path.Combine(images, "red.png"))));
        var expected = Chat.FormatForTraining([new ChatTurn(ChatRole.User, "What colour is this?", HasImage: true), new ChatTurn(ChatRole.Assistant, "red")]);
        Assert.That(first.Ids, Is.EqualTo(expected.Ids));
        Assert.That(first.Labels, Is.EqualTo(expected.Labels));
        Assert.That(first.Ids.Count(i => i == ParrotSample.ImageToken), Is.EqualTo(1));
        // Supervised: "red" + <|im_end|> (last turn: no trailing newline).
        Assert.That(first.Labels.Where(l => l != ParrotSample.IgnoreIndex), Is.EqualTo("red"u8.ToArray().Select(b => (int)b).Append(258)));

        var textOnly = ds.Examples[3];
        Assert.That(textOnly.ImagePath, Is.Null);
        Assert.That(textOnly.Ids, Does.Not.Contain(ParrotSample.ImageToken));
        Assert.That(ds.Examples[1].Language, Is.EqualTo("zh"));
    }

    [Test]
    public void LanguageComesFromTheFieldOrTheIdPrefix()
    {
        Assert.That(LlavaDataset.DetectLanguage("ar_17", null), Is.EqualTo("ar"));
        Assert.That(LlavaDataset.DetectLanguage("ru-3", null), Is.EqualTo("ru"));
        Assert.That(LlavaDataset.DetectLanguage("cn/abc", null), Is.EqualTo("cn"));
        Assert.That(LlavaDataset.DetectLanguage("000123", null), Is.Null);
        Assert.That(LlavaDataset.DetectLanguage("coco_5", null), Is.Null);
        Assert.That(LlavaDataset.DetectLanguage("coco_5", "TR"), Is.EqualTo("tr"));
    }

    [Test]
    public void JsonLinesAreReadToo()
    {
        var dir = TempDir();
        var path = Path.Combine(dir, "d.jsonl");
        File.WriteAllText(path, Sample("a", null, ("human", "hi"), ("gpt", "yo")).ToJsonString() + "\n\n" + Sample("b", null, ("human", "x"), ("gpt", "y")).ToJsonString() + "\n");
        var ds = LlavaDataset.Load(path, dir, Chat, DataOptions());
        Assert.That(ds.Examples.Select(e => e.Id), Is.EqualTo(new[] { "a", "b" }));
    }

    private static IEnumerable<TestCaseData> BadSamples()
    {
        yield return new TestCaseData(Sample("s1", null), "empty conversation").SetName("Empty conversation");
        yield return new TestCaseData(new JsonObject { ["id"] = "s1" }, "no \"conversations\"").SetName("Missing conversations");
        yield return new TestCaseData(Sample("s1", null, ("human", "hi"), ("robot", "beep")), "unknown role \"robot\"").SetName("Unknown role");
        yield return new TestCaseData(Sample("s1", "nope.png", ("human", "<image>\nhi"), ("gpt", "x")), "image file not found").SetName("Missing image");
        yield return new TestCaseData(Sample("s1", null, ("human", "hi")), "no gpt turn").SetName("No answer");
        yield return new TestCaseData(Sample("s1", null, ("human", new string('a', 300)), ("gpt", "x")), "over the maximum length 200").SetName("Too long");
        yield return new TestCaseData(Sample("s1", null, ("human", "<image>\nhi"), ("gpt", "x")), "placeholder but the sample has no image").SetName("Placeholder without image");
    }

    [TestCaseSource(nameof(BadSamples))]
    public void BadSamplesNameTheFileAndTheSample(JsonObject bad, string reason)
    {
        var dir = TempDir();
        var path = WriteJson(dir, [Sample("good", null, ("human", "hi"), ("gpt", "yo")), bad]);
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions(maxLength: 200)));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("'s1'").And.Contain(reason));

        var skipping = LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true, maxLength: 200));
        Assert.That(skipping.Examples.Select(x => x.Id), Is.EqualTo(new[] { "good" }));
        Assert.That(skipping.Skipped, Has.Count.EqualTo(1));
        Assert.That(skipping.Skipped[0].SampleId, Is.EqualTo("s1"));
        Assert.That(skipping.Skipped[0].ToString(), Does.Contain(reason));
    }

    [Test]
    public void TheLengthLimitCountsTheVisualTokens()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir, samples: 1);
        int textLength = LlavaDataset.Load(json, images, Chat, DataOptions()).Examples[0].Ids.Length;
        int withImage = textLength - 1 + ImageTokens;
        Assert.DoesNotThrow(() => LlavaDataset.Load(json, images, Chat, DataOptions(maxLength: withImage)));
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(json, images, Chat, DataOptions(maxLength: withImage - 1)));
        Assert.That(e!.Message, Does.Contain($"{withImage} tokens long"));
    }

    /// <summary>A sample longer than the model's context is refused even under a larger maximum length (and skipped with SkipBad).</summary>
    [Test]
    public void TheModelsContextLimitsTooWhateverTheMaximumLength()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir, samples: 2);
        int withImage = LlavaDataset.Load(json, images, Chat, DataOptions()).Examples.Max(x => x.Ids.Length) - 1 + ImageTokens;
        Assert.DoesNotThrow(() => LlavaDataset.Load(json, images, Chat, DataOptions() with { Context = withImage }));
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(json, images, Chat, DataOptions() with { Context = withImage - 1 }));
        Assert.That(e!.Message, Does.Contain($"{withImage} tokens long").And.Contain($"over the model's context of {withImage - 1} positions"));
        Assert.That(DataOptions().MaxLength, Is.GreaterThan(withImage), "the maximum length alone lets it through");
    }

    [Test]
    public void MalformedJsonIsReportedWithItsPosition()
    {
        var dir = TempDir();
        var path = Path.Combine(dir, "broken.json");
        File.WriteAllText(path, "[\n  {\"id\": \"a\",\n   \"conversations\": [}\n]");
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true)));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("malformed JSON at line 3"));

        var lines = Path.Combine(dir, "broken.jsonl");
        File.WriteAllText(lines, Sample("a", null, ("human", "hi"), ("gpt", "yo")).ToJsonString() + "\n{\"id\": \"b\", oops}\n");
        e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(lines, dir, Chat, DataOptions()));
        Assert.That(e!.Message, Does.Contain("malformed JSON on line 2"));

        Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(Path.Combine(dir, "absent.json"), dir, Chat));
        var obj = Path.Combine(dir, "obj.json");
        File.WriteAllText(obj, "{}");
        Assert.That(Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(obj, dir, Chat))!.Message, Does.Contain("expected a JSON array"));
    }

    /// <summary>Files saved by Windows tools: a byte order mark and CRLF line ends are no fault (the JSON array with a BOM was "malformed JSON").</summary>
    [Test]
    public void ByteOrderMarkAndCrlfAreAccepted()
    {
        var dir = TempDir();
        var json = Path.Combine(dir, "bom.json");
        File.WriteAllText(json, new JsonArray(Sample("a", null, ("human", "hi"), ("gpt", "yo"))).ToJsonString().Replace(",", ",\r\n"), new System.Text.UTF8Encoding(true));
        Assert.That(LlavaDataset.Load(json, dir, Chat, DataOptions()).Examples.Select(e => e.Id), Is.EqualTo(new[] { "a" }));
        var lines = Path.Combine(dir, "bom.jsonl");
        File.WriteAllText(lines, Sample("a", null, ("human", "hi"), ("gpt", "yo")).ToJsonString() + "\r\n" + Sample("b", null, ("human", "x"), ("gpt", "y")).ToJsonString() + "\r\n", new System.Text.UTF8Encoding(true));
        var ds = LlavaDataset.Load(lines, dir, Chat, DataOptions());
        Assert.That(ds.Examples.Select(e => e.Id), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(ds.Examples[1].Ids, Is.EqualTo(LlavaDataset.Load(lines, dir, Chat, DataOptions()).Examples[1].Ids));
    }

    /// <summary>
    /// A line that is not UTF-8 used to be decoded to U+FFFD and trained on; it is the reader's LlavaDataException (it was
    /// Utf8Lines' InvalidDataException, unlike the same bytes in a .json file), even when skipping bad samples.
    /// </summary>
    [Test]
    public void NonUtf8LineIsNamed()
    {
        var dir = TempDir();
        var lines = Path.Combine(dir, "latin1.jsonl");
        var good = System.Text.Encoding.UTF8.GetBytes(Sample("a", null, ("human", "hi"), ("gpt", "yo")).ToJsonString() + "\n");
        // ToJsonString would escape the é; the Latin-1 byte 0xE9 is written raw.
        var bad = System.Text.Encoding.Latin1.GetBytes(Sample("b", null, ("human", "cafe"), ("gpt", "y")).ToJsonString().Replace("cafe", "caf\u00e9") + "\n");
        File.WriteAllBytes(lines, [.. good, .. bad]);
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(lines, dir, Chat, DataOptions(skipBad: true)));
        Assert.That(e!.Message, Does.StartWith(lines + ":2: not valid UTF-8 (byte 0xE9"));
    }

    /// <summary>
    /// The data fingerprint (trainer_state.json's data_fingerprint, checked by --resume) is the same for the same samples
    /// however they are loaded: with --skip-bad or without on clean data, as JSON lines, with the
    /// images folder given as another spelling of the same path or moved with its data, and — for images the data names by
    /// absolute path — whatever --images says (those were hashed relative to it, so the same data with another --images
    /// was "a different dataset").
    /// </summary>
    [Test]
    public void TheFingerprintIsStableForTheSameSamples()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var reference = LlavaDataset.Load(json, images, Chat, DataOptions()).Fingerprint;
        Assert.That(LlavaDataset.Load(json, images, Chat, DataOptions(skipBad: true)).Fingerprint, Is.EqualTo(reference), "--skip-bad on clean data");
        Assert.That(LlavaDataset.Load(json, images + Path.DirectorySeparatorChar + "." + Path.DirectorySeparatorChar, Chat, DataOptions()).Fingerprint, Is.EqualTo(reference), "images/./");
        var lines = Path.Combine(dir, "data.jsonl");
        File.WriteAllLines(lines, JsonNode.Parse(File.ReadAllText(json))!.AsArray().Select(n => n!.ToJsonString()));
        Assert.That(LlavaDataset.Load(lines, images, Chat, DataOptions()).Fingerprint, Is.EqualTo(reference), "JSON lines");

        // Images named by absolute path: two --images folders at different depths give the same fingerprint.
        var absolute = JsonNode.Parse(File.ReadAllText(json))!.AsArray();
        foreach (var o in absolute)
            if (o!["image"] is { } image) o["image"] = Path.GetFullPath(Path.Combine(images, image.GetValue<string>()));
        var absoluteJson = WriteJson(dir, absolute, "absolute.json");
        var near = Directory.CreateDirectory(Path.Combine(dir, "a")).FullName;
        var far = Directory.CreateDirectory(Path.Combine(dir, "b", "c", "d")).FullName;
        var fromNear = LlavaDataset.Load(absoluteJson, near, Chat, DataOptions());
        var fromFar = LlavaDataset.Load(absoluteJson, far, Chat, DataOptions());
        Assert.That(fromFar.Examples.Select(e => e.ImagePath), Is.EqualTo(fromNear.Examples.Select(e => e.ImagePath)), "the same image files");
        Assert.That(fromFar.Fingerprint, Is.EqualTo(fromNear.Fingerprint), "absolute image paths do not depend on --images");
        // And a changed sample still changes it.
        absolute[0]!["conversations"]![1]!["value"] = "purple";
        Assert.That(LlavaDataset.Load(WriteJson(dir, absolute, "absolute2.json"), near, Chat, DataOptions()).Fingerprint, Is.Not.EqualTo(fromNear.Fingerprint));
    }

    [Test]
    public void AllBadIsAnErrorEvenWhenSkipping()
    {
        var dir = TempDir();
        var path = WriteJson(dir, [Sample("x", null)]);
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true)));
        Assert.That(e!.Message, Does.Contain("no usable samples"));
    }

    [Test]
    public void FeaturesAreComputedOncePerImageAndCachedOnDisk()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var ds = LlavaDataset.Load(json, images, Chat, DataOptions());
        var cache = Path.Combine(dir, "features");
        var withImages = ds.Examples.Where(e => e.ImagePath is not null).ToList();
        float[] first;
        using (var f = new LlavaImageFeatures(ToyTower, Preprocessor, padToSquare: true, cacheDir: cache))
        {
            using var batch = f.Batch(withImages.Select(e => e.ImagePath!).ToList(), withImages.Select(e => e.Id).ToList());
            Assert.That(batch.Shape.ToArray(), Is.EqualTo(new[] { withImages.Count, ImageTokens, Channels }));
            Assert.That(f.TowerCalls, Is.EqualTo(3));
            using var again = f.Batch(withImages.Select(e => e.ImagePath!).ToList(), withImages.Select(e => e.Id).ToList());
            Assert.That(f.TowerCalls, Is.EqualTo(3));
            first = batch.ToFloatArray();

            // Equal to running the tower on the preprocessed image directly.
            using var scope = TensorScope.Begin();
            var px = Preprocessor.Process(global::Parrot.Parrot.Vision.ImageLoader.Load(withImages[0].ImagePath!), true).Unsqueeze(0);
            Assert.That(ToyTower(px).ToFloatArray(), Is.EqualTo(first.Take(ImageTokens * Channels)));
        }
        Assert.That(Directory.GetFiles(cache, "*.npy"), Has.Length.EqualTo(3));
        using (var f = new LlavaImageFeatures(_ => throw new AssertionException("the tower must not run"), Preprocessor, cacheDir: cache))
        {
            using var batch = f.Batch(withImages.Select(e => e.ImagePath!).ToList(), withImages.Select(e => e.Id).ToList());
            Assert.That(batch.ToFloatArray(), Is.EqualTo(first));
            Assert.That(f.TowerCalls, Is.Zero);
        }
    }

    /// <summary>
    /// A file that is not an intact image used to pass loading (only its existence was checked) and stop the
    /// run when its batch came, hours in and even with skipping on; now it is a bad sample when loading.
    /// </summary>
    [Test]
    public void ImagesThatAreNotIntactAreBadSamplesWhenLoading()
    {
        var dir = TempDir();
        WritePng(Path.Combine(dir, "good.png"), 10, 20, 30);
        var png = File.ReadAllBytes(Path.Combine(dir, "good.png"));
        File.WriteAllBytes(Path.Combine(dir, "truncated.png"), png[..(png.Length / 2)]);
        File.WriteAllBytes(Path.Combine(dir, "empty.jpg"), []);
        File.WriteAllText(Path.Combine(dir, "page.jpg"), "<html>404 Not Found</html>");
        var samples = new JsonArray(
            Sample("good", "good.png", ("human", "<image>\nhi"), ("gpt", "x")),
            Sample("cut", "truncated.png", ("human", "<image>\nhi"), ("gpt", "x")),
            Sample("empty", "empty.jpg", ("human", "<image>\nhi"), ("gpt", "x")),
            Sample("html", "page.jpg", ("human", "<image>\nhi"), ("gpt", "x")),
            Sample("cut-again", "truncated.png", ("human", "<image>\nwhat?"), ("gpt", "y")));
        var path = WriteJson(dir, samples);

        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions()));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("'cut'").And.Contain("cannot read the image: " + Path.Combine(dir, "truncated.png") + ": truncated"));

        var skipping = LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true));
        Assert.That(skipping.Examples.Select(x => x.Id), Is.EqualTo(new[] { "good" }));
        Assert.That(skipping.Skipped.Select(x => x.SampleId), Is.EqualTo(new[] { "cut", "empty", "html", "cut-again" }));
        Assert.That(skipping.Skipped[1].ToString(), Does.Contain("the file is empty"));
        Assert.That(skipping.Skipped[2].ToString(), Does.Contain("not a JPEG, PNG, GIF, WebP or BMP image"));
        Assert.That(skipping.Skipped[3].ToString(), Does.Contain("truncated"));
    }

    /// <summary>
    /// Images are checked several at a time, yet problems come in file order: here the later images' checks are made
    /// to end first (the cache lookup, which runs before each check, waits longer for earlier images), and the skipped
    /// samples, their messages and the first problem of a load that does not skip are those of the serial check.
    /// </summary>
    [Test]
    public void ParallelChecksReportProblemsInFileOrder()
    {
        var dir = TempDir();
        WritePng(Path.Combine(dir, "good.png"), 10, 20, 30);
        var png = File.ReadAllBytes(Path.Combine(dir, "good.png"));
        var samples = new JsonArray();
        var expected = new List<(string Id, string Reason)>();
        for (int i = 0; i < 24; i++)
        {
            string name = $"img{i}.png";
            switch (i % 3)
            {
                case 0: File.WriteAllBytes(Path.Combine(dir, name), png); break;
                case 1: File.WriteAllBytes(Path.Combine(dir, name), png[..(png.Length / 2)]); expected.Add(($"s{i}", "truncated")); break;
                default: File.WriteAllText(Path.Combine(dir, name), $"<html>{i}</html>"); expected.Add(($"s{i}", "not a JPEG, PNG, GIF, WebP or BMP image")); break;
            }
            samples.Add(Sample($"s{i}", name, ("human", "<image>\nhi"), ("gpt", "x")));
        }
        var path = WriteJson(dir, samples);
        int running = 0, most = 0;
        var order = new System.Collections.Concurrent.ConcurrentQueue<string>();
        bool NotCachedAfterAWait(string image)
        {
            int now = Interlocked.Increment(ref running);
            InterlockedMax(ref most, now);
            int i = int.Parse(Path.GetFileNameWithoutExtension(image)[3..]);
            Thread.Sleep(5 * (24 - i)); // the first images' checks start last
            order.Enqueue(Path.GetFileName(image));
            Interlocked.Decrement(ref running);
            return false;
        }
        var options = DataOptions(skipBad: true) with { HasCachedFeatures = NotCachedAfterAWait };

        var skipping = LlavaDataset.Load(path, dir, Chat, options);
        Assert.That(skipping.Skipped.Select(x => x.SampleId), Is.EqualTo(expected.Select(x => x.Id)));
        for (int k = 0; k < expected.Count; k++)
            Assert.That(skipping.Skipped[k].Message, Does.StartWith("cannot read the image: " + Path.Combine(dir, $"img{expected[k].Id[1..]}.png") + ": ").And.Contain(expected[k].Reason));
        Assert.That(skipping.Examples.Select(x => x.Id), Is.EqualTo(Enumerable.Range(0, 8).Select(i => $"s{3 * i}")));
        Assert.That(skipping.ImagesChecked, Is.EqualTo(24));
        if (Environment.ProcessorCount > 1)
        {
            Assert.That(most, Is.GreaterThan(1), "checked several at a time");
            Assert.That(order.ToArray(), Is.Not.EqualTo(Enumerable.Range(0, 24).Select(i => $"img{i}.png")), "finished out of file order");
        }

        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, options with { SkipBad = false }));
        Assert.That(e!.Message, Does.Contain("'s1'").And.Contain("truncated"));

        static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
        }
    }

    /// <summary>
    /// <see cref="LlavaOptions.ImageCheckThreads"/> bounds the images checked at once (a rank's share of the machine when
    /// several ranks load at the same time); null keeps one per processor. Counted in the cache lookup, which runs
    /// first in each check and here waits long enough for the checks to overlap.
    /// </summary>
    [Test]
    public void ImageChecksRunAtMostTheGivenThreadsAtOnce()
    {
        var dir = TempDir();
        WritePng(Path.Combine(dir, "good.png"), 10, 20, 30);
        var samples = new JsonArray();
        for (int i = 0; i < 16; i++)
        {
            File.Copy(Path.Combine(dir, "good.png"), Path.Combine(dir, $"img{i}.png"));
            samples.Add(Sample($"s{i}", $"img{i}.png", ("human", "<image>\nhi"), ("gpt", "x")));
        }
        var path = WriteJson(dir, samples);

        int MostAtOnce(int? threads)
        {
            int running = 0, most = 0;
            bool NotCachedAfterAWait(string image)
            {
                int now = Interlocked.Increment(ref running);
                int seen;
                while ((seen = Volatile.Read(ref most)) < now && Interlocked.CompareExchange(ref most, now, seen) != seen) { }
                Thread.Sleep(20);
                Interlocked.Decrement(ref running);
                return false;
            }
            var ds = LlavaDataset.Load(path, dir, Chat, DataOptions() with { HasCachedFeatures = NotCachedAfterAWait, ImageCheckThreads = threads });
            Assert.That(ds.ImagesChecked, Is.EqualTo(16));
            return most;
        }

        Assert.That(MostAtOnce(1), Is.EqualTo(1));
        Assert.That(MostAtOnce(2), Is.InRange(1, 2));
        Assert.That(MostAtOnce(null), Is.InRange(1, Environment.ProcessorCount));
        if (Environment.ProcessorCount > 1) Assert.That(MostAtOnce(Environment.ProcessorCount), Is.GreaterThan(1), "the check can overlap, so one at a time above is the bound's doing");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions() with { ImageCheckThreads = 0 }));
        Assert.That(e!.Message, Does.Contain("at least 1"));
    }

    /// <summary>
    /// Which problem a sample reports is the serial check's: one found before its image (no conversation) comes first, then
    /// the image's, then the rest (an unknown role); without skipping the load stops at the first bad sample in file
    /// order, and malformed JSON after a bad image reports the image (malformed JSON ends even a skipping load).
    /// </summary>
    [Test]
    public void TheImageProblemKeepsItsPlaceAmongTheSamplesProblems()
    {
        var dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "page.jpg"), "<html>404 Not Found</html>");
        var noConversation = new JsonObject { ["id"] = "head", ["image"] = "page.jpg" };
        var badRoleAndImage = Sample("both", "page.jpg", ("human", "<image>\nhi"), ("robot", "beep"));
        var path = WriteJson(dir, [Sample("good", null, ("human", "hi"), ("gpt", "yo")), noConversation, badRoleAndImage, Sample("role", null, ("human", "hi"), ("robot", "x"))]);
        var skipping = LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true));
        Assert.That(skipping.Skipped.Select(x => (x.SampleId, x.Message.Split(':')[0])), Is.EqualTo(new[]
        {
            ("head", "has no \"conversations\""), ("both", "cannot read the image"), ("role", "turn 2 has the unknown role \"robot\" (expected human, gpt or system)"),
        }));
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions()));
        Assert.That(e!.Message, Does.Contain("'head'").And.Contain("has no \"conversations\""));

        var lines = Path.Combine(dir, "d.jsonl");
        File.WriteAllText(lines, Sample("a", null, ("human", "hi"), ("gpt", "yo")).ToJsonString() + "\n"
            + Sample("img", "page.jpg", ("human", "<image>\nhi"), ("gpt", "x")).ToJsonString() + "\n{\"id\": \"b\", oops}\n");
        e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(lines, dir, Chat, DataOptions()));
        Assert.That(e!.Message, Does.Contain("'img'").And.Contain("cannot read the image"));
        e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(lines, dir, Chat, DataOptions(skipBad: true)));
        Assert.That(e!.Message, Does.Contain("malformed JSON on line 3"));
    }

    /// <summary>
    /// Without --skip-bad the load stops at the first bad sample, as the serial check did: a bad image near the start is
    /// reported after its block of images (<see cref="LlavaDataset.ImageCheckBlock"/>) is checked, not after every image
    /// of the file is (the parallel check of 63d5dac read and tokenised the whole file and checked all its images first:
    /// minutes on LLaVA's 665k samples before a bad first image was named). Skipping still checks them all.
    /// </summary>
    [Test]
    public void ALoadThatDoesNotSkipStopsSoonAfterABadImage()
    {
        var dir = TempDir();
        WritePng(Path.Combine(dir, "good.png"), 10, 20, 30);
        var png = File.ReadAllBytes(Path.Combine(dir, "good.png"));
        int n = 3 * LlavaDataset.ImageCheckBlock;
        var samples = new JsonArray();
        for (int i = 0; i < n; i++)
        {
            File.WriteAllBytes(Path.Combine(dir, $"img{i}.png"), i == 1 ? png[..(png.Length / 2)] : png);
            samples.Add(Sample($"s{i}", $"img{i}.png", ("human", "<image>\nhi"), ("gpt", "x")));
        }
        var path = WriteJson(dir, samples);
        int looked = 0;
        var options = DataOptions() with { HasCachedFeatures = _ => { Interlocked.Increment(ref looked); return false; } };

        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, options));
        Assert.That(e!.Message, Does.Contain("'s1'").And.Contain("truncated"));
        Assert.That(looked, Is.EqualTo(LlavaDataset.ImageCheckBlock), "images looked at before the first bad one was reported");

        looked = 0;
        var skipping = LlavaDataset.Load(path, dir, Chat, options with { SkipBad = true });
        Assert.That(looked, Is.EqualTo(n));
        Assert.That((skipping.ImagesChecked, skipping.Examples.Count, skipping.Skipped.Single().SampleId), Is.EqualTo((n, n - 1, "s1")));
    }

    /// <summary>
    /// JSON that parses but whose strings cannot be read — an unpaired surrogate escape ("\ud800") in an id, a role, a
    /// value, a language or an image path, or a NUL in an image path — is a bad sample like any other: skipped with
    /// --skip-bad, and without it reported after a bad image ahead of it, in file order. Reading such a string threw
    /// InvalidOperationException (and a NUL path ArgumentException) from the first pass: it named neither file nor sample,
    /// stopped a skipping load, and, since the images are now checked after that pass, came before the bad image ahead.
    /// </summary>
    [TestCase(".json")]
    [TestCase(".jsonl")]
    public void UnreadableStringsAreBadSamplesInFileOrder(string extension)
    {
        var dir = TempDir();
        File.WriteAllText(Path.Combine(dir, "page.jpg"), "<html>404 Not Found</html>");
        static string Conv(string human) => $"\"conversations\":[{{\"from\":\"human\",\"value\":\"{human}\"}},{{\"from\":\"gpt\",\"value\":\"x\"}}]";
        var records = new[]
        {
            "{\"id\":\"img\",\"image\":\"page.jpg\"," + Conv("<image>\\nhi") + "}",
            "{\"id\":\"value\"," + Conv("a\\ud800b") + "}",
            "{\"id\":\"role\",\"conversations\":[{\"from\":\"hu\\udc00man\",\"value\":\"hi\"},{\"from\":\"gpt\",\"value\":\"x\"}]}",
            "{\"id\":\"lang\",\"language\":\"\\ud800\"," + Conv("hi") + "}",
            "{\"id\":\"path\",\"image\":\"p\\ud800.png\"," + Conv("hi") + "}",
            "{\"id\":\"nul\",\"image\":\"a\\u0000.png\"," + Conv("hi") + "}",
            "{\"id\":\"x\\ud800\"," + Conv("hi") + "}",
            "{\"id\":\"ok\"," + Conv("hi") + "}",
        };
        var path = Path.Combine(dir, "data" + extension);
        File.WriteAllText(path, extension == ".json" ? "[" + string.Join(",", records) + "]" : string.Join("\n", records) + "\n");

        var skipping = LlavaDataset.Load(path, dir, Chat, DataOptions(skipBad: true));
        Assert.That(skipping.Examples.Select(x => x.Id), Is.EqualTo(new[] { "ok" }));
        Assert.That(skipping.Skipped.Select(x => x.SampleId), Is.EqualTo(new[] { "img", "value", "role", "lang", "path", "nul", "#6" }));
        Assert.That(skipping.Skipped.Skip(1).Select(x => x.Message.Split(" (line")[0]), Is.EqualTo(new[]
        {
            "turn 1's \"value\" is not valid text (an unpaired UTF-16 surrogate escape)",
            "turn 1's \"from\" is not valid text (an unpaired UTF-16 surrogate escape)",
            "\"language\" is not valid text (an unpaired UTF-16 surrogate escape)",
            "\"image\" is not valid text (an unpaired UTF-16 surrogate escape)",
        }.Append(skipping.Skipped[5].Message.Split(" (line")[0]).Append("\"id\" is not valid text (an unpaired UTF-16 surrogate escape)")));
        Assert.That(skipping.Skipped[5].Message, Does.StartWith("\"image\" is not a usable path: "));

        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(path, dir, Chat, DataOptions()));
        Assert.That(e!.Message, Does.Contain("'img'").And.Contain("cannot read the image"));
    }

    /// <summary>
    /// An image whose features are cached under its current key is not checked: its pixels were decoded when the features
    /// were computed, and training reads the features, not the file. The key is the path, size and modification time:
    /// an image rewritten since (here damaged, with a new time) has no cached features and is checked again. What the
    /// skip cannot see, a file rewritten to the same size with its old time put back, the cache cannot see either: the
    /// run would read the old features and never open the file, so the check would only stop a run that would not fail.
    /// </summary>
    [Test]
    public void ImagesWithCachedFeaturesAreNotChecked()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var cache = Path.Combine(dir, "features");
        var first = LlavaDataset.Load(json, images, Chat, DataOptions());
        var withImages = first.Examples.Where(x => x.ImagePath is not null).DistinctBy(x => x.ImagePath).ToList();
        Assert.That(withImages, Has.Count.EqualTo(3));
        Assert.That((first.ImagesChecked, first.ImagesCached), Is.EqualTo((3, 0)));
        using (var f = new LlavaImageFeatures(ToyTower, Preprocessor, cacheDir: cache))
            for (int i = 0; i < 2; i++) f.Get(withImages[i].ImagePath!, withImages[i].Id);

        using var features = new LlavaImageFeatures(_ => throw new AssertionException("the tower must not run"), Preprocessor, cacheDir: cache);
        Assert.That(withImages.Select(x => features.IsCached(x.ImagePath!)), Is.EqualTo(new[] { true, true, false }));
        var options = DataOptions() with { HasCachedFeatures = features.IsCached };
        var again = LlavaDataset.Load(json, images, Chat, options);
        Assert.That((again.ImagesChecked, again.ImagesCached), Is.EqualTo((1, 2)));
        Assert.That(again.Examples.Select(x => x.Id), Is.EqualTo(first.Examples.Select(x => x.Id)));

        // Damaged since, at a new time: not cached any more, checked, and a bad sample.
        var damaged = withImages[0].ImagePath!;
        File.WriteAllText(damaged, "<html>404 Not Found</html>");
        File.SetLastWriteTimeUtc(damaged, DateTime.UtcNow.AddMinutes(1));
        Assert.That(features.IsCached(damaged), Is.False);
        var e = Assert.Throws<LlavaDataException>(() => LlavaDataset.Load(json, images, Chat, options));
        Assert.That(e!.Message, Does.Contain($"'{withImages[0].Id}'").And.Contain("cannot read the image: " + damaged));
        var skipping = LlavaDataset.Load(json, images, Chat, options with { SkipBad = true });
        Assert.That((skipping.ImagesChecked, skipping.ImagesCached), Is.EqualTo((2, 1)));
        Assert.That(skipping.Skipped.Select(x => x.SampleId), Does.Contain(withImages[0].Id));
    }

    /// <summary>
    /// The cached file used to be named by the image's path alone, so a run with another tower, layer or padding
    /// sharing the cache (the same --out, or --feature-cache), or an image edited in place, silently read back
    /// features of the other setting.
    /// </summary>
    [Test]
    public void CachedFeaturesAreNotReadBackForAnotherTowerPaddingOrAnEditedImage()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var ds = LlavaDataset.Load(json, images, Chat, DataOptions());
        var cache = Path.Combine(dir, "features");
        var image = ds.Examples.First(e => e.ImagePath is not null);
        float[] Features(string tag, bool pad, Func<Tensor, Tensor> tower, out int towerCalls)
        {
            using var f = new LlavaImageFeatures(tower, Preprocessor, padToSquare: pad, cacheDir: cache, cacheTag: tag);
            var values = f.Get(image.ImagePath!, image.Id).ToFloatArray();
            towerCalls = f.TowerCalls;
            return values;
        }
        Tensor Doubled(Tensor pixels) => ToyTower(pixels) * 2;

        var first = Features("tower A", true, ToyTower, out int calls);
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(Features("tower A", true, _ => throw new AssertionException("cached"), out calls), Is.EqualTo(first));
        Assert.That(Features("tower B", true, Doubled, out calls), Is.EqualTo(first.Select(x => x * 2).ToArray()));
        Assert.That(calls, Is.EqualTo(1), "another tower's features are computed, not read back");
        Assert.That(Features("tower A", false, ToyTower, out calls), Is.EqualTo(ToyTowerUnpadded()));
        Assert.That(calls, Is.EqualTo(1), "without padding");

        // The image edited in place (another size, a later time): computed again.
        WritePng(image.ImagePath!, 1, 2, 3, size: 24);
        File.SetLastWriteTimeUtc(image.ImagePath!, DateTime.UtcNow.AddMinutes(1));
        Assert.That(Features("tower A", true, ToyTower, out calls), Is.Not.EqualTo(first));
        Assert.That(calls, Is.EqualTo(1));

        float[] ToyTowerUnpadded()
        {
            using var scope = TensorScope.Begin();
            var px = Preprocessor.Process(global::Parrot.Parrot.Vision.ImageLoader.Load(image.ImagePath!), false).Unsqueeze(0);
            return ToyTower(px).ToFloatArray();
        }
    }

    [Test]
    public void TheTowerTagChangesWithTheLayerTheConfigAndTheWeights()
    {
        var tower = Path.Combine(TempDir(), "tower");
        Directory.CreateDirectory(tower);
        File.WriteAllText(Path.Combine(tower, "config.json"), "{\"hidden_size\": 8}");
        File.WriteAllBytes(Path.Combine(tower, "model.safetensors"), new byte[10]);
        var tag = LlavaImageFeatures.TowerCacheTag(tower, -2);
        Assert.That(LlavaImageFeatures.TowerCacheTag(tower, -2), Is.EqualTo(tag));
        Assert.That(LlavaImageFeatures.TowerCacheTag(tower, -1), Is.Not.EqualTo(tag));
        File.WriteAllText(Path.Combine(tower, "preprocessor_config.json"), "{\"crop_size\": 16}");
        var withPreprocessor = LlavaImageFeatures.TowerCacheTag(tower, -2);
        Assert.That(withPreprocessor, Is.Not.EqualTo(tag));
        File.WriteAllBytes(Path.Combine(tower, "model.safetensors"), new byte[11]);
        Assert.That(LlavaImageFeatures.TowerCacheTag(tower, -2), Is.Not.EqualTo(withPreprocessor), "retrained weights");
    }

    [Test]
    public void AnUnreadableImageNamesTheSample()
    {
        var dir = TempDir();
        var bad = Path.Combine(dir, "bad.png");
        File.WriteAllText(bad, "not a png");
        using var f = new LlavaImageFeatures(ToyTower, Preprocessor);
        var e = Assert.Throws<LlavaDataException>(() => f.Get(bad, "en_9"));
        Assert.That(e!.Message, Does.Contain(bad).And.Contain("'en_9'"));
    }
}
