using System.Text;
using System.Text.Json.Nodes;
using Parrot.Parrot.Text;
using Parrot.Tensors.Formats;
using static Parrot.Parrot.Tests.Text.TokenizerFixtures;

namespace Parrot.Parrot.Tests.Text;

/// <summary>A bad or unsupported tokenizer.json is an exception naming the file and the problem.</summary>
public class TokenizerFileTests
{
    private static void ExpectInvalid(JsonObject json, string problem)
    {
        var e = Assert.Throws<InvalidDataException>(() => Build(json));
        Assert.That(e!.Message, Does.StartWith("tiny.json: ").And.Contain(problem));
    }

    private static void ExpectUnsupported(JsonObject json, string problem)
    {
        var e = Assert.Throws<NotSupportedException>(() => Build(json));
        Assert.That(e!.Message, Does.StartWith("tiny.json: ").And.Contain(problem));
    }

    [Test]
    public void TheTinyFileIsValid() => Assert.That(Build(TinyJson([("a", "b")])).Encode("ab"), Is.EqualTo(new[] { 256 }));

    [Test]
    public void MalformedJson()
    {
        var e = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromJson("{\"model\": "u8, "broken.json"));
        Assert.That(e!.Message, Does.StartWith("broken.json: not valid JSON"));
        Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromJson("[1, 2]"u8, "x"));
    }

    [Test]
    public void UnreadableStringsNameTheFileAndWhere()
    {
        // The escape \ud800 (an unpaired surrogate) parses but is not text: a string read or a vocabulary key's name threw
        // InvalidOperationException, naming neither the file nor the place.
        string tiny = TinyJson([("a", "b")]).ToJsonString();
        foreach (var (bad, where) in new[]
        {
            (tiny.Replace("\"BPE\"", "\"BPE\\ud800\""), "the string at $.model.type"),
            (tiny.Replace("\"vocab\":{", "\"vocab\":{\"\\ud800\":0,"), "a key of $.model.vocab"),
        })
        {
            Assert.That(bad, Is.Not.EqualTo(tiny));
            var e = Assert.Throws<InvalidDataException>(() => BpeTokenizer.FromJson(Encoding.UTF8.GetBytes(bad), "tiny.json"));
            Assert.That(e!.Message, Is.EqualTo($"tiny.json: {where} {JsonText.NotText}"));
        }
    }

    [Test]
    public void MissingKeys()
    {
        var json = TinyJson(); json.Remove("model");
        ExpectInvalid(json, "missing the 'model' object");
        json = TinyJson(); json["model"]!.AsObject().Remove("vocab");
        ExpectInvalid(json, "model.vocab is missing");
        json = TinyJson(); json["model"]!.AsObject().Remove("merges");
        ExpectInvalid(json, "model.merges is missing");
        json = TinyJson(); json["model"]!.AsObject().Remove("type");
        ExpectInvalid(json, "model.type is missing");
        json = TinyJson(added: [Added(300, "<x>")]); json["added_tokens"]![0]!.AsObject().Remove("content");
        ExpectInvalid(json, "added_tokens[0]: 'content' is missing");
    }

    [Test]
    public void BadIds()
    {
        var json = TinyJson(); json["model"]!["vocab"]!["zz"] = -3;
        ExpectInvalid(json, "the id of token 'zz' is not a non-negative integer");
        json = TinyJson(); json["model"]!["vocab"]!["zz"] = 1.5;
        ExpectInvalid(json, "the id of token 'zz'");
        json = TinyJson(); json["model"]!["vocab"]!["zz"] = 5;
        ExpectInvalid(json, "id 5 is given to both");
        json = TinyJson(); json["model"]!["vocab"]!["zz"] = 1_000_000;
        ExpectInvalid(json, "id 1000000 of 'zz' is out of range");
        ExpectInvalid(TinyJson(added: [Added(300, "<x>"), Added(300, "<y>")]), "id 300 is already used by added token '<x>'");
        ExpectInvalid(TinyJson(added: [Added(300, "<x>"), Added(301, "<x>")]), "'<x>' is already an added token");
        ExpectInvalid(TinyJson(added: [Added(3, "<x>")]), "added token '<x>': id 3 is the id of vocabulary token");
        ExpectInvalid(TinyJson(added: [Added(9000, "<x>")]), "has id 9000, out of range");
        ExpectInvalid(TinyJson(added: [Added(-1, "<x>")]), "'id' is missing or not a non-negative integer");
    }

    [Test]
    public void MalformedMerges()
    {
        var json = TinyJson(); json["model"]!["merges"] = new JsonArray("a b c");
        ExpectInvalid(json, "model.merges[0]: \"a b c\" is not two tokens separated by one space");
        json = TinyJson(); json["model"]!["merges"] = new JsonArray("ab");
        ExpectInvalid(json, "is not two tokens");
        json = TinyJson(); json["model"]!["merges"] = new JsonArray(new JsonArray("a"));
        ExpectInvalid(json, "model.merges[0]: expected");
        json = TinyJson(); json["model"]!["merges"] = new JsonArray(7);
        ExpectInvalid(json, "model.merges[0]: expected");
        json = TinyJson(); json["model"]!["merges"] = new JsonArray("a b");
        ExpectInvalid(json, "'ab' (from merging 'a' and 'b') is not in model.vocab");
        // The older string format works like the pair format.
        json = TinyJson([("a", "b")]); json["model"]!["merges"] = new JsonArray("a b");
        Assert.That(Build(json).Encode("ab"), Is.EqualTo(new[] { 256 }));
    }

    [Test]
    public void MissingByteSymbols()
    {
        var json = TinyJson(); json["model"]!["vocab"]!.AsObject().Remove("Ġ");
        json["model"]!["vocab"]!["space"] = 32;
        ExpectInvalid(json, "lacks the byte-level symbol 'Ġ' for byte 0x20");
    }

    [Test]
    public void UnsupportedComponentsAreNamed()
    {
        var json = TinyJson(); json["model"]!["type"] = "WordPiece";
        ExpectUnsupported(json, "model type 'WordPiece'");
        json = TinyJson(); json["normalizer"] = new JsonObject { ["type"] = "NFKC" };
        ExpectUnsupported(json, "normalizer 'NFKC'");
        json = TinyJson(); json["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" };
        ExpectUnsupported(json, "pre_tokenizer 'Whitespace'");
        json = TinyJson(); json["pre_tokenizer"]!["pretokenizers"]![0]!["behavior"] = "Removed";
        ExpectUnsupported(json, "Split behavior 'Removed'");
        json = TinyJson(); json["pre_tokenizer"]!["pretokenizers"]![0]!["invert"] = true;
        ExpectUnsupported(json, "invert = true");
        json = TinyJson(); json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["String"] = " " };
        ExpectUnsupported(json, "only a Regex pattern");
        json = TinyJson(); json["pre_tokenizer"]!["pretokenizers"]![1]!["use_regex"] = true;
        ExpectUnsupported(json, "use_regex = true");
        json = TinyJson(); json["pre_tokenizer"]!["pretokenizers"]![1]!["add_prefix_space"] = true;
        ExpectUnsupported(json, "add_prefix_space = true");
        json = TinyJson(); json["pre_tokenizer"] = null;
        ExpectUnsupported(json, "no pre_tokenizer");
        json = TinyJson(); json["decoder"] = new JsonObject { ["type"] = "WordPiece" };
        ExpectUnsupported(json, "decoder 'WordPiece'");
        json = TinyJson(); json["post_processor"] = new JsonObject { ["type"] = "TemplateProcessing" };
        ExpectUnsupported(json, "post_processor 'TemplateProcessing'");
        json = TinyJson(); json["model"]!["byte_fallback"] = true;
        ExpectUnsupported(json, "byte_fallback");
        json = TinyJson(); json["model"]!["dropout"] = 0.1;
        ExpectUnsupported(json, "dropout");
        json = TinyJson(); json["model"]!["continuing_subword_prefix"] = "##";
        ExpectUnsupported(json, "continuing_subword_prefix");
        json = TinyJson(); json["padding"] = new JsonObject { ["strategy"] = "BatchLongest" };
        ExpectUnsupported(json, "'padding' is set");
    }

    [Test]
    public void AByteOrderMarkIsSkipped()
    {
        byte[] json = [.. "\uFEFF"u8, .. Encoding.UTF8.GetBytes(TinyJson([("a", "b")]).ToJsonString())];
        Assert.That(BpeTokenizer.FromJson(json, "bom.json").Encode("ab"), Is.EqualTo(new[] { 256 }));
    }

    /// <summary>A split pattern with catastrophic backtracking used to hang Encode; now one match has a time limit.</summary>
    [Test, CancelAfter(60_000)]
    public void ACatastrophicSplitPatternIsAnErrorNotAHang()
    {
        var json = TinyJson();
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "(a+)+$" };
        var tokenizer = Build(json);
        Assert.That(tokenizer.Encode("aaa"), Has.Length.EqualTo(3), "ordinary text still splits");
        var e = Assert.Throws<InvalidDataException>(() => tokenizer.Encode(new string('a', 40) + "!"));
        Assert.That(e!.Message, Does.StartWith("tiny.json: the pre-tokenizer pattern took over").And.Contain("catastrophic backtracking"));
    }

    [Test]
    public void WithoutASplitStepTheWholeTextIsOneWord()
    {
        // "Ġ" spells the space in the vocabulary; with the split pattern "a b" would be "a", " b".
        var json = TinyJson([("a", "Ġ"), ("aĠ", "b")]);
        json["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false };
        Assert.That(Build(json).Encode("a b"), Has.Length.EqualTo(1));
        Assert.That(Build(TinyJson([("a", "Ġ"), ("aĠ", "b")])).Encode("a b"), Has.Length.EqualTo(3));
    }

    [Test]
    public void FilesOnDiskReportTheirPath()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, "{}");
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => BpeTokenizer.Load(path));
            Assert.That(e!.Message, Does.StartWith(path + ": "));
            // A deflate block of the reserved type 3.
            File.WriteAllBytes(path, [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 0x07, 0, 0, 0]);
            e = Assert.Throws<InvalidDataException>(() => BpeTokenizer.Load(path));
            Assert.That(e!.Message, Does.StartWith(path + ": corrupt gzip data"));
        }
        finally { File.Delete(path); }
        Assert.Throws<FileNotFoundException>(() => BpeTokenizer.Load(path));
    }

    [Test]
    public void TheQwenFileLoadsInReasonableTime()
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var t = BpeTokenizer.Load(QwenTokenizerPath);
        TestContext.Out.WriteLine($"loading Qwen's tokenizer.json.gz: {watch.ElapsedMilliseconds} ms");
        Assert.That(t.AddedTokens, Has.Count.EqualTo(26));
        Assert.That(t.IdToToken(0), Is.EqualTo("!"));
        Assert.That(t.IdToToken(151645), Is.EqualTo("<|im_end|>"));
        Assert.That(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(t.Decode(t.Encode("ok")))), Is.EqualTo("ok"));
    }
}
