using System.Text;
using Parrot.Parrot.Text;
using static Parrot.Parrot.Tests.Text.TokenizerFixtures;

namespace Parrot.Parrot.Tests.Text;

/// <summary>Behaviour of the tokenizer beyond the corpus: special tokens, decoding, merges, flags.</summary>
public class BpeTokenizerTests
{
    private const int EndOfText = 151643, ImStart = 151644, ImEnd = 151645, Think = 151667;

    [Test]
    public void SpecialTokensInTextBecomeTheirIds()
    {
        Assert.That(Qwen.Encode("<|im_start|>user\nhi<|im_end|>"), Is.EqualTo(new[] { ImStart, 872, 198, 6023, ImEnd }));
        Assert.That(Qwen.Encode("<|endoftext|>"), Is.EqualTo(new[] { EndOfText }));
        Assert.That(Qwen.TokenToId("<|im_end|>"), Is.EqualTo(ImEnd));
        Assert.That(Qwen.IsSpecial(ImEnd) && !Qwen.IsSpecial(Think) && !Qwen.IsSpecial(872), Is.True);
        Assert.That(Qwen.IdCount, Is.EqualTo(151669));
    }

    [Test]
    public void SpecialTokensCanBeReadAsPlainText()
    {
        int[] plain = Qwen.Encode("<|im_end|> <think>", parseSpecialTokens: false);
        Assert.That(plain, Does.Not.Contain(ImEnd), "a special token read as text");
        Assert.That(plain, Does.Contain(Think), "non-special added tokens still match");
        Assert.That(Qwen.Decode(plain), Is.EqualTo("<|im_end|> <think>"));
        Assert.That(plain[..^1], Has.All.LessThan(EndOfText));
        Assert.That(plain[^1], Is.EqualTo(Think));
    }

    [Test]
    public void EncodeAppendsToAList()
    {
        var ids = new List<int> { -1 };
        Qwen.Encode("Hello world", ids);
        Assert.That(ids, Is.EqualTo(new[] { -1, 9707, 1879 }));
        Assert.That(Qwen.Encode(""), Is.Empty);
    }

    [Test]
    public void DecodeSkipsSpecialTokensOnRequest()
    {
        int[] ids = Qwen.Encode("<|im_start|>assistant\n<think>ok</think>Hi<|im_end|>");
        Assert.That(Qwen.Decode(ids), Is.EqualTo("<|im_start|>assistant\n<think>ok</think>Hi<|im_end|>"));
        Assert.That(Qwen.Decode(ids, skipSpecialTokens: true), Is.EqualTo("assistant\n<think>ok</think>Hi"));
    }

    [TestCase(-1)]
    [TestCase(151669)]
    [TestCase(int.MaxValue)]
    public void UnknownIdsThrowNamingTheId(int id)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Qwen.Decode(new[] { 9707, id }));
        Assert.That(e!.Message, Does.Contain($"unknown token id {id}"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen.CreateStreamDecoder().Push(id));
    }

    [Test]
    public void LoneSurrogatesAreEncodedAsReplacementCharacters() =>
        Assert.That(Qwen.Encode("a\uD800b\uDC00"), Is.EqualTo(Qwen.Encode("a\uFFFDb\uFFFD")));

    [Test]
    public void StreamingDecoderHoldsBackPartialCharacters()
    {
        // "中" is E4 B8 AD: three single-byte tokens.
        var ids = new[] { 0xE4, 0xB8, 0xAD }.Select(b => Qwen.TokenToId(ByteChar(b).ToString())!.Value).ToArray();
        var stream = Qwen.CreateStreamDecoder();
        Assert.That(stream.Push(ids[0]), Is.Empty);
        Assert.That(stream.Push(ids[1]), Is.Empty);
        Assert.That(stream.Push(ids[2]), Is.EqualTo("中"));
        // An unfinished character at the end of the stream is one U+FFFD, as Decode gives.
        Assert.That(stream.Push(ids[0]), Is.Empty);
        Assert.That(stream.Flush(), Is.EqualTo("\uFFFD"));
        Assert.That(Qwen.Decode(ids[..1]), Is.EqualTo("\uFFFD"));
    }

    [Test]
    public void StreamingDecodeOfCorpusLinesEqualsWholeDecode()
    {
        foreach (var line in ReadJsonLines("tokenizer-corpus.jsonl"))
        {
            string text = line.GetProperty("text").GetString()!;
            int[] ids = Qwen.Encode(text);
            var stream = Qwen.CreateStreamDecoder();
            var sb = new StringBuilder();
            foreach (int id in ids)
            {
                string piece = stream.Push(id);
                Assert.That(piece.Length == 0 || !char.IsHighSurrogate(piece[^1]), $"half a surrogate pair emitted for {text}");
                if (!text.EnumerateRunes().Any(r => r.Value == 0xFFFD)) // lone surrogates enumerate as U+FFFD too
                    Assert.That(piece, Does.Not.Contain("\uFFFD"), $"a replacement character emitted for {text}");
                sb.Append(piece);
            }
            sb.Append(stream.Flush());
            Assert.That(sb.ToString(), Is.EqualTo(Qwen.Decode(ids)), text);
        }
    }

    [Test]
    public void StreamingDecodeOfRandomIdsEqualsWholeDecode()
    {
        // Random ids make every kind of broken UTF-8: lone continuation bytes, truncated and overlong sequences.
        var random = new Random(7);
        for (int trial = 0; trial < 300; trial++)
        {
            int[] ids = Enumerable.Range(0, random.Next(1, 40))
                .Select(_ => random.Next(4) == 0 ? random.Next(256) : random.Next(Qwen.IdCount)).ToArray();
            var stream = Qwen.CreateStreamDecoder(skipSpecialTokens: trial % 2 == 0);
            var sb = new StringBuilder();
            foreach (int id in ids) sb.Append(stream.Push(id));
            sb.Append(stream.Flush());
            Assert.That(sb.ToString(), Is.EqualTo(Qwen.Decode(ids, skipSpecialTokens: trial % 2 == 0)), string.Join(",", ids));
        }
    }

    [Test]
    public void ConcurrentEncodingGivesTheSameIds()
    {
        // A fresh tokenizer, so that the threads fill its word cache together.
        var fresh = BpeTokenizer.Load(QwenTokenizerPath);
        var texts = ReadJsonLines("tokenizer-corpus.jsonl").Select(e => e.GetProperty("text").GetString()!).ToArray();
        var expected = texts.Select(t => Qwen.Encode(t)).ToArray();
        var actual = new int[texts.Length * 4][];
        Parallel.For(0, actual.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i] = fresh.Encode(texts[i % texts.Length]));
        for (int i = 0; i < actual.Length; i++) Assert.That(actual[i], Is.EqualTo(expected[i % texts.Length]));
    }

    [Test]
    public void MergesApplyByRankThenLeftmost()
    {
        var t = Build(TinyJson([("b", "c"), ("a", "b")]));
        Assert.That(Tokens(t, "abc"), Is.EqualTo(new[] { "a", "bc" }));
        t = Build(TinyJson([("a", "b"), ("b", "c")]));
        Assert.That(Tokens(t, "abc"), Is.EqualTo(new[] { "ab", "c" }));
        t = Build(TinyJson([("a", "a")]));
        Assert.That(Tokens(t, "aaa"), Is.EqualTo(new[] { "aa", "a" }));
        Assert.That(Tokens(t, "aaaaa"), Is.EqualTo(new[] { "aa", "aa", "a" }));
        t = Build(TinyJson([("a", "a"), ("aa", "aa"), ("aaaa", "a")]));
        Assert.That(Tokens(t, "aaaaa"), Is.EqualTo(new[] { "aaaaa" }));
        // aa·aa·aa·a → aaaa·aa·a: "aaaa" and "a" are no longer neighbours.
        Assert.That(Tokens(t, "aaaaaaa"), Is.EqualTo(new[] { "aaaa", "aa", "a" }));
    }

    [Test]
    public void LongWordsMergeInNearLinearTime()
    {
        var t = Build(TinyJson([("a", "a"), ("aa", "aa"), ("aaaa", "aaaa"), ("aaaaaaaa", "aaaaaaaa")]));
        string word = new('a', 100_003);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        int[] ids = t.Encode(word);
        Assert.That(watch.Elapsed.TotalSeconds, Is.LessThan(2));
        Assert.That(ids, Has.Length.EqualTo(100_000 / 16 + 2)); // 6250 × 16, then "aa" and "a"
        Assert.That(t.Decode(ids), Is.EqualTo(word));
    }

    [Test]
    public void IgnoreMergesTakesWholeWordsFromTheVocabulary()
    {
        var json = TinyJson([("a", "b")]);
        json["model"]!["vocab"]!["abc"] = 257;
        Assert.That(Build(json).Encode("abc"), Is.EqualTo(new[] { 256, IdOf('c') }));
        json["model"]!["ignore_merges"] = true;
        Assert.That(Build(json).Encode("abc"), Is.EqualTo(new[] { 257 }));
        Assert.That(Build(json).Encode("abd"), Is.EqualTo(new[] { 256, IdOf('d') }));
    }

    [Test]
    public void AddedTokensMatchLeftmostLongest()
    {
        var t = Build(TinyJson(added: [Added(256, "<a>"), Added(257, "<a><b>"), Added(258, "b>")]));
        Assert.That(t.Encode("x<a><b>y"), Is.EqualTo(new[] { IdOf('x'), 257, IdOf('y') }));
        Assert.That(t.Encode("<a>b>"), Is.EqualTo(new[] { 256, 258 }));
        Assert.That(t.Decode(new[] { 257 }), Is.EqualTo("<a><b>"));
    }

    [Test]
    public void SingleWordTokensOnlyMatchOutsideWords()
    {
        var t = Build(TinyJson(added: [Added(256, "<mask>", special: false, singleWord: true)]));
        // Hugging Face's own cases: a letter, or a combining mark, next to the token makes it part of a word.
        Assert.That(Count(t.Encode("<mask> My name <mask> A<mask> <mask>ony <mask>"), 256), Is.EqualTo(3));
        Assert.That(Count(t.Encode("<mask>, <mask>- \u25CC\u0330<mask>"), 256), Is.EqualTo(2));
        Assert.That(Count(t.Encode("x_<mask>"), 256), Is.Zero);
        Assert.That(Count(t.Encode("\U0001D400<mask>"), 256), Is.Zero, "an astral letter is a word character");
    }

    [Test]
    public void StripFlagsSwallowNeighbouringWhitespace()
    {
        var t = Build(TinyJson(added: [Added(256, "<mask>", special: false, singleWord: true, lstrip: true, rstrip: true)]));
        // "Hi", " <mask> ", "there", "\t<mask>\t", "<mask>\u2000": the tab between two masks goes to the first.
        int[] ids = t.Encode("Hi <mask> there\t<mask>\t<mask>\u2000");
        var expected = new List<int> { IdOf('H'), IdOf('i'), 256 };
        expected.AddRange("there".Select(IdOf));
        expected.AddRange([256, 256]);
        Assert.That(ids, Is.EqualTo(expected));
    }

    [Test]
    public void NormalizedAddedTokensMatchTheNormalizedText()
    {
        var normalized = Build(TinyJson(added: [Added(256, "caf\u00E9", special: false, normalized: true)]));
        Assert.That(normalized.Encode("cafe\u0301!"), Is.EqualTo(new[] { 256, IdOf('!') }));
        var raw = Build(TinyJson(added: [Added(256, "caf\u00E9", special: false, normalized: false)]));
        Assert.That(raw.Encode("cafe\u0301!"), Does.Not.Contain(256));
        Assert.That(raw.Encode("caf\u00E9!"), Is.EqualTo(new[] { 256, IdOf('!') }));
    }

    [Test]
    public void GzipAndPlainFilesLoadAlike()
    {
        string plain = Path.Combine(Path.GetTempPath(), $"tok-{Guid.NewGuid():N}.json");
        File.WriteAllText(plain, TinyJson([("a", "b")]).ToJsonString());
        try
        {
            Assert.That(BpeTokenizer.Load(plain).Encode("ab"), Is.EqualTo(new[] { 256 }));
        }
        finally { File.Delete(plain); }
    }

    private static BpeTokenizer Qwen => TokenizerFixtures.Qwen;

    private static int IdOf(char c) => Enumerable.Range(0, 256).First(b => ByteChar(b) == c);

    private static int Count(int[] ids, int id) => ids.Count(i => i == id);

    private static string[] Tokens(BpeTokenizer t, string text) => t.Encode(text).Select(id => t.IdToToken(id)!).ToArray();
}
