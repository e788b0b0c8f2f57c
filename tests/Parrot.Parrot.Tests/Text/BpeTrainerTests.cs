using System.Text;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Text;

/// <summary>The byte-level BPE trainer: hand-checked merges, an independent naive trainer, round trips through BpeTokenizer, errors.</summary>
public class BpeTrainerTests
{
    private static readonly string[] TrainingSentences =
    [
        "The red circle is on the left of the blue square.",
        "There are three green triangles in the picture.",
        "What colour is the large circle? The large circle is yellow.",
        "How many squares are there? There are 2 squares.",
        "图片中有三个绿色的三角形。",
        "左边的圆是红色的，右边的正方形是蓝色的。",
        "图片里有几个正方形？有两个正方形。",
        "O círculo vermelho está à esquerda do quadrado azul.",
        "Há três triângulos verdes na imagem.",
        "Qual é a cor do círculo grande? O círculo grande é amarelo.",
        "الدائرة الحمراء على يسار المربع الأزرق.",
        "توجد ثلاثة مثلثات خضراء في الصورة.",
        "ما لون الدائرة الكبيرة؟ الدائرة الكبيرة صفراء.",
        "Kırmızı daire mavi karenin solunda.",
        "Resimde üç yeşil üçgen var.",
        "Büyük dairenin rengi ne? Büyük daire sarı.",
        "Красный круг находится слева от синего квадрата.",
        "На картинке три зелёных треугольника.",
        "Какого цвета большой круг? Большой круг жёлтый.",
    ];

    private static readonly string[] HeldOut =
    [
        "The small purple hexagon is above 17 orange stars! 🦜🎨",
        "图片中有五个紫色的六边形吗？没有。",
        "Quantos hexágonos roxos há na imagem? Há 4.",
        "كم عدد النجوم البرتقالية؟ 12",
        "Küçük mor altıgen yıldızların üstünde mi? Evet, 2024'te.",
        "Сколько фиолетовых шестиугольников? Их 3. Ёж",
        "mixed: naïve café — 東京 ١٢٣ 👩‍👩‍👧 \t tabs\r\nand\n\n\nnewlines   ",
        "<|im_start|>user\nWhat colour?<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|><|endoftext|>",
    ];

    private static string Corpus(int repeats)
    {
        var sb = new StringBuilder();
        for (int r = 0; r < repeats; r++)
            foreach (string s in TrainingSentences) sb.Append(s).Append('\n');
        return sb.ToString();
    }

    private static BpeTrainingResult Train(string text, int vocabSize, int minPairFrequency = 2, IReadOnlyList<string>? specials = null)
    {
        var trainer = new BpeTrainer(new BpeTrainerOptions
        {
            VocabSize = vocabSize,
            MinPairFrequency = minPairFrequency,
            SpecialTokens = specials ?? BpeTrainerOptions.DefaultSpecialTokens,
        });
        trainer.AddText(text);
        return trainer.Train();
    }

    private static string TempFile(string name) =>
        Path.Combine(Path.GetTempPath(), "parrot-bpe-tests", Guid.NewGuid().ToString("N"), name);

    [Test]
    public void TheFirstMergesOfATinyCorpusAreTheHandCountedOnes()
    {
        // One word "aaabdaaabac": pairs aa ×4, ab ×2, the rest ×1. Merging aa left to right gives
        // [aa a b d aa a b a c]; then (aa,a) and (a,b) both occur twice and the tie goes to the smaller
        // ids, (a,b) = (64, 65) before (aa,a) = (256, 64); then (aa,ab) ×2; then every pair occurs once.
        var result = Train("aaabdaaabac", vocabSize: 400);
        Assert.That(result.Merges, Is.EqualTo(new[] { ("a", "a"), ("a", "b"), ("aa", "ab") }));
        Assert.That(result.Tokens.Skip(256), Is.EqualTo(new[] { "aa", "ab", "aaab" }));
        Assert.That(result.IdCount, Is.EqualTo(259 + 3), "stops early: no pair is left twice");
        var tok = result.ToTokenizer();
        Assert.That(tok.Encode("aaabdaaabac"), Is.EqualTo(new[] { 258, 'd' - '!', 258, 'a' - '!', 'c' - '!' }));

        // With single occurrences allowed, the next tie goes to (a,c) = (64, 66), the smallest pair.
        var more = Train("aaabdaaabac", vocabSize: 260 + 3, minPairFrequency: 1);
        Assert.That(more.Merges[3], Is.EqualTo(("a", "c")));
        Assert.That(more.IdCount, Is.EqualTo(263));
    }

    [Test]
    public void BaseIdsFollowGpt2Order()
    {
        var tok = Train(Corpus(1), 300).ToTokenizer();
        Assert.That(tok.TokenToId("!"), Is.EqualTo(0));
        Assert.That(tok.TokenToId("Ċ"), Is.EqualTo(198)); // '\n', as in GPT-2 and Qwen
        Assert.That(tok.TokenToId("Ġ"), Is.EqualTo(220)); // ' '
        Assert.That(tok.TokenToId("ÿ"), Is.EqualTo(187));
        Assert.That(tok.TokenToId("Ā"), Is.EqualTo(188)); // byte 0
        for (int b = 0; b < 256; b++)
            Assert.That(tok.Decode([tok.TokenToId(TokenizerFixtures.ByteChar(b).ToString())!.Value]),
                Is.EqualTo(Encoding.UTF8.GetString([(byte)b])), $"byte {b}");
    }

    [Test]
    public void MatchesANaiveTrainerThatRecountsEveryPair()
    {
        // Words over a 3-letter alphabet: many ties, runs like "aaaa" (overlapping pairs) and tokens reached
        // by two merge paths ("ab"+"c" and "a"+"bc"), which keep one id.
        var random = new Random(1234);
        var sb = new StringBuilder();
        for (int i = 0; i < 3000; i++)
        {
            if (i > 0) sb.Append(i % 40 == 0 ? '\n' : ' ');
            int length = 1 + random.Next(9);
            for (int k = 0; k < length; k++) sb.Append("abc"[random.Next(random.Next(2) == 0 ? 1 : 3)]);
        }
        string text = sb.ToString();
        foreach (int minFrequency in new[] { 1, 2, 5 })
        {
            var result = Train(text, vocabSize: 256 + 3 + 400, minPairFrequency: minFrequency);
            var expected = NaiveTrain(text, maxTokens: 256 + 400, minFrequency);
            Assert.That(result.Merges, Is.EqualTo(expected), $"min frequency {minFrequency}");
            int distinct = expected.Select(m => m.Item1 + m.Item2).Distinct().Count();
            Assert.That(result.Tokens.Count, Is.EqualTo(256 + distinct));
        }
    }

    [Test]
    public void AMergeThatRebuildsAnExistingTokenKeepsItsId()
    {
        // Seeded with "ab" already in the vocabulary (as when "a"+"bc" follows "ab"+"c"), merging (a, b)
        // takes id 256 again and the vocabulary only grows with (ab, ab).
        var tokens = Enumerable.Range(0, 256).Select(b => TokenizerFixtures.ByteChar(b)).Order().Select(c => c.ToString()).ToList();
        tokens.Add("ab");
        var idOfByte = new int[256];
        for (int b = 0; b < 256; b++) idOfByte[b] = tokens.IndexOf(TokenizerFixtures.ByteChar(b).ToString());
        var learner = new BpeMergeLearner(tokens, idOfByte, [new("ab", 5), new("abab", 3)]);
        learner.Run(vocabularySize: 260, minPairFrequency: 1);
        int a = tokens.IndexOf("a"), b2 = tokens.IndexOf("b");
        Assert.That(learner.Merges, Is.EqualTo(new[] { (a, b2), (256, 256) }));
        Assert.That(tokens.Skip(256), Is.EqualTo(new[] { "ab", "abab" }));
    }

    /// <summary>
    /// Textbook BPE, recounting all pairs after each merge. The text is ASCII letter words joined by ' '
    /// and '\n', which Qwen's pattern cuts into "word", " word" and "\n" pieces.
    /// </summary>
    private static List<(string, string)> NaiveTrain(string text, int maxTokens, int minFrequency)
    {
        var pieces = new List<string>();
        foreach (string line in text.Split('\n'))
        {
            if (pieces.Count > 0) pieces.Add("\n");
            string[] parts = line.Split(' ');
            for (int i = 0; i < parts.Length; i++) pieces.Add((i > 0 ? " " : "") + parts[i]);
        }
        var counts = pieces.GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count());
        var ids = new Dictionary<string, int>();
        foreach (int b in Enumerable.Range(0, 256).OrderBy(b => TokenizerFixtures.ByteChar(b)))
            ids[TokenizerFixtures.ByteChar(b).ToString()] = ids.Count;
        var words = counts.Select(kv => (Symbols: kv.Key.Select(c => TokenizerFixtures.ByteChar(c).ToString()).ToList(), Count: kv.Value)).ToList();
        var merges = new List<(string, string)>();
        while (ids.Count < maxTokens)
        {
            var pairCounts = new Dictionary<(string, string), int>();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    pairCounts[(symbols[i], symbols[i + 1])] = pairCounts.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairCounts.Count == 0) break;
            var best = pairCounts.OrderByDescending(kv => kv.Value).ThenBy(kv => ids[kv.Key.Item1]).ThenBy(kv => ids[kv.Key.Item2]).First();
            if (best.Value < minFrequency) break;
            var (left, right) = best.Key;
            merges.Add((left, right));
            ids.TryAdd(left + right, ids.Count);
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == left && symbols[i + 1] == right)
                    {
                        symbols[i] = left + right;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return merges;
    }

    [Test]
    public void AMultilingualTokenizerRoundTripsHeldOutTextAndCompresses()
    {
        string path = TempFile("tokenizer.json");
        var result = Train(Corpus(20), vocabSize: 800);
        result.Save(path);
        var tok = BpeTokenizer.Load(path);
        Assert.That(tok.IdCount, Is.EqualTo(result.IdCount));
        foreach (string text in HeldOut.Concat(TrainingSentences))
        {
            int[] ids = tok.Encode(text);
            Assert.That(tok.Decode(ids), Is.EqualTo(text), text);
            Assert.That(ids, Has.All.InRange(0, tok.IdCount - 1));
        }
        // Decoding gives the NFC form of decomposed input.
        Assert.That(tok.Decode(tok.Encode("cafe\u0301")), Is.EqualTo("caf\u00E9"));

        // Every training sentence costs far fewer tokens than bytes; held-out text in the same languages fewer too.
        foreach (string s in TrainingSentences)
            Assert.That(tok.Encode(s).Length, Is.LessThan(Encoding.UTF8.GetByteCount(s) * 0.5), s);
        int heldOutTokens = HeldOut.Sum(s => tok.Encode(s).Length), heldOutBytes = HeldOut.Sum(Encoding.UTF8.GetByteCount);
        Assert.That(heldOutTokens, Is.LessThan(heldOutBytes * 0.8));
        // Frequent whole words of each language became single tokens.
        foreach (string word in new[] { " circle", " círculo", " круг", "الدائرة", " daire", "图片中有三个绿色的三角形" })
            Assert.That(tok.Encode(word), Has.Length.EqualTo(1), word);
    }

    [Test]
    public void SpecialTokensFollowTheVocabulary()
    {
        var result = Train(Corpus(5) + "<|im_start|>user\nhi<|im_end|>\n", vocabSize: 500,
            specials: ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]);
        Assert.That(result.IdCount, Is.EqualTo(500));
        var tok = result.ToTokenizer();
        int first = result.Tokens.Count;
        Assert.That(first, Is.EqualTo(496));
        Assert.That(tok.TokenToId("<|endoftext|>"), Is.EqualTo(first));
        Assert.That(tok.TokenToId("<|im_start|>"), Is.EqualTo(first + 1));
        Assert.That(tok.TokenToId("<|im_end|>"), Is.EqualTo(first + 2));
        Assert.That(tok.TokenToId("<image>"), Is.EqualTo(first + 3));
        Assert.That(Enumerable.Range(first, 4).All(tok.IsSpecial) && !tok.IsSpecial(first - 1), Is.True);
        int[] ids = tok.Encode("<|im_start|>user\n<image>\nWhat?<|im_end|>");
        Assert.That(ids[0], Is.EqualTo(first + 1));
        Assert.That(ids, Does.Contain(first + 3));
        Assert.That(ids[^1], Is.EqualTo(first + 2));
        Assert.That(tok.Decode(ids, skipSpecialTokens: true), Is.EqualTo("user\n\nWhat?"));
        // Special tokens in the corpus are not learned from: no merged token holds '<|' from them.
        Assert.That(result.Tokens.Where(t => t.Contains("im_")), Is.Empty);
    }

    [Test]
    public void TrainingIsDeterministicAndIndependentOfHowTheTextArrives()
    {
        string corpus = Corpus(10);
        byte[] once = Train(corpus, 700).ToJson();
        Assert.That(Train(corpus, 700).ToJson(), Is.EqualTo(once));

        // Split across calls at a line start, and read from files: the same words, so the same file.
        int half = corpus.IndexOf('\n', corpus.Length / 2) + 1;
        var trainer = new BpeTrainer(new BpeTrainerOptions { VocabSize = 700 });
        trainer.AddText(corpus[..half]);
        string file = TempFile("b.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        File.WriteAllText(file, corpus[half..], new UTF8Encoding(true)); // a BOM is skipped
        trainer.AddFile(file);
        Assert.That(trainer.Train().ToJson(), Is.EqualTo(once));

        // The file is the layout of Qwen's own tokenizer.json, as text with one final newline.
        string json = Encoding.UTF8.GetString(once);
        Assert.That(json, Does.StartWith("{\n  \"version\": \"1.0\",\n  \"truncation\": null,"));
        Assert.That(json, Does.Contain("\"Ġ\": 220").And.Contain("\"merges\": [").And.EndWith("}\n"));
    }

    [Test]
    public void ChunkedCountingEqualsCountingTheWholeText()
    {
        // Above the chunk size, with lines that start with spaces, digits, punctuation and combining marks.
        var random = new Random(7);
        var sb = new StringBuilder();
        string[] starts = ["", " ", "  ", "7", "\u0301", "«", "\n", "\r\n", "é", "中"];
        while (sb.Length < 700_000)
            sb.Append(starts[random.Next(starts.Length)]).Append(TrainingSentences[random.Next(TrainingSentences.Length)])
              .Append(random.Next(3) == 0 ? "  \n" : "\n");
        string text = sb.ToString();
        var chunks = BpeWordCounter.Chunks(new StringReader(text)).ToList();
        Assert.That(chunks, Has.Count.GreaterThan(2));
        Assert.That(string.Concat(chunks), Is.EqualTo(text));

        var counter = new BpeWordCounter(BpeTrainerOptions.DefaultSpecialTokens, BpeTrainer.QwenSplitPattern);
        counter.Add(new StringReader(text));
        var split = new RegexPreTokenizer(BpeTrainer.QwenSplitPattern, "test");
        var pieces = new List<Range>();
        string normalized = Nfc.Normalize(text);
        split.Split(normalized, pieces);
        var expected = pieces.Select(r => normalized[r]).GroupBy(w => w).ToDictionary(g => g.Key, g => (long)g.Count());
        Assert.That(counter.Counts, Is.EquivalentTo(expected));
        Assert.That(counter.Characters, Is.EqualTo(text.Length));
    }

    [Test]
    public void BadOptionsAreRefusedWithTheReason()
    {
        var e = Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 259 }));
        Assert.That(e!.Message, Does.Contain("vocabulary size 259 leaves no room for merges").And.Contain("ask for more than 259"));
        Assert.That(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 257, SpecialTokens = [] }), Throws.Nothing);
        Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 256, SpecialTokens = [] }));
        Assert.That(Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 300, SpecialTokens = ["<a>", "<a>"] }))!.Message,
            Does.Contain("'<a>' is given twice"));
        Assert.That(Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 300, SpecialTokens = [""] }))!.Message,
            Does.Contain("a special token is empty"));
        Assert.That(Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 300, SpecialTokens = ["<a\n>"] }))!.Message,
            Does.Contain("holds a line break"));
        Assert.That(Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 300, SpecialTokens = ["x"] }))!.Message,
            Does.Contain("is a byte-level symbol"));
        Assert.That(Assert.Throws<ArgumentException>(() => new BpeTrainer(new BpeTrainerOptions { VocabSize = 300, MinPairFrequency = 0 }))!.Message,
            Does.Contain("minimum pair frequency"));
    }

    [Test]
    public void EmptyOrUnreadableCorporaAreRefused()
    {
        var trainer = new BpeTrainer(new BpeTrainerOptions { VocabSize = 300 });
        Assert.That(Assert.Throws<InvalidOperationException>(() => trainer.Train())!.Message, Does.Contain("the corpus is empty"));
        trainer.AddText("");
        trainer.AddText("<|im_end|><|endoftext|>");
        Assert.That(Assert.Throws<InvalidOperationException>(() => trainer.Train())!.Message, Does.Contain("the corpus is empty"));

        string missing = TempFile("missing.txt");
        var notFound = Assert.Throws<FileNotFoundException>(() => trainer.AddFile(missing));
        Assert.That(notFound!.Message, Does.Contain(missing));

        string bad = TempFile("latin1.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(bad)!);
        File.WriteAllBytes(bad, [(byte)'c', (byte)'a', (byte)'f', 0xE9, (byte)'\n']);
        var invalid = Assert.Throws<InvalidDataException>(() => trainer.AddFile(bad));
        Assert.That(invalid!.Message, Does.Contain(bad).And.Contain("not valid UTF-8"));

        // One character per word: no pair at all, so the vocabulary is the bytes and the special tokens.
        trainer.AddText("a b c");
        var result = trainer.Train();
        Assert.That(result.Merges, Is.Empty);
        Assert.That(result.IdCount, Is.EqualTo(259));
        Assert.That(result.ToTokenizer().Decode(result.ToTokenizer().Encode("a b c")), Is.EqualTo("a b c"));
    }

    [Test]
    public void SaveIsAtomicAndRefusesADirectory()
    {
        var result = Train(Corpus(2), 400);
        string path = TempFile("nested/dir/tokenizer.json");
        File.WriteAllText(Path.Combine(CreateParent(path)), "old");
        result.Save(path);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(result.ToJson()));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Has.Length.EqualTo(1), "no temporary file is left");
        var e = Assert.Throws<IOException>(() => result.Save(Path.GetDirectoryName(path)!));
        Assert.That(e!.Message, Does.Contain("is a directory"));
    }

    private static string CreateParent(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }
}
