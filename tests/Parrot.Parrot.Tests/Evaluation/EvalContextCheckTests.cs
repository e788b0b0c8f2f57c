using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Vision;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Evaluation;

/// <summary>A scripted model with a context: each question's prompt length comes from a script (question, with an image).</summary>
internal sealed class LengthScriptedGenerator(int context, Func<string, bool, int?> length) : IAnswerGenerator, IContextAwareGenerator
{
    public List<AnswerRequest> Requests { get; } = [];
    public List<(string Question, bool WithImage)> Measured { get; } = [];

    public string Answer(AnswerRequest request)
    {
        Requests.Add(request);
        return "A";
    }

    public int ContextLength => context;

    public int? PromptLength(string prompt, bool withImage)
    {
        var q = ScriptedGenerator.QuestionOf(prompt);
        Measured.Add((q, withImage));
        return length(q, withImage);
    }
}

/// <summary>
/// The evaluation checks every question's length against the model's context before it generates any answer (a question
/// that did not fit used to stop the run when it was reached, hours in), and counts the lengths as generation does.
/// </summary>
public class EvalContextCheckTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => _dir = TinyModels.TempDir("parrot-eval-context-tests");

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static readonly string[] Columns = ["index", "image", "question", "A", "B", "answer", "category"];

    private static string B64(int k) => Convert.ToBase64String(Enumerable.Range(0, 60).Select(i => (byte)(k * 31 + i * 7)).ToArray());

    /// <summary>Questions Q0…Q{n−1}; even ones carry an image.</summary>
    private BenchmarkFile Bench(string name, int n)
    {
        var rows = Enumerable.Range(0, n).Select(k => new[] { $"{k}", k % 2 == 0 ? B64(k) : "", $"Q{k}", "x", "y", "A", "c" }).ToList();
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, TsvTable.Format(Columns, rows));
        return BenchmarkFile.Load(path, requireImages: false);
    }

    [Test]
    public void ARunWithQuestionsPastTheContextIsRefusedBeforeAnyAnswer()
    {
        var en = Bench("bench_en.tsv", 10);
        var pt = Bench("bench_pt.tsv", 4);
        // Q1, Q3 … (no image) are 100 tokens; with an image 50 more; Q7 of each file 700, Q8 600: with 512 new tokens and a
        // context of 1000, Q7 (en), Q8 (en) and nothing in pt (Q0–Q3) are too long, Q6 (150) fits.
        var generator = new LengthScriptedGenerator(1000, (q, image) => q switch { "Q7" => 700, "Q8" => 600 + (image ? 50 : 0), _ => 100 + (image ? 50 : 0) });
        var journalPath = Path.Combine(_dir, "journal.jsonl");
        using (var journal = PredictionJournal.Open(journalPath, new Dictionary<string, string> { ["model"] = "m" }))
        {
            var e = Assert.Throws<QuestionsTooLongException>(() => Evaluator.Run([en, pt], generator, new EvaluationOptions { MaxNewTokens = 512 }, journal));
            Assert.That(generator.Requests, Is.Empty, "no answer was generated");
            Assert.That(e!.Questions, Is.EqualTo(new[] { ("bench_en.tsv", "7", 700), ("bench_en.tsv", "8", 650) }));
            Assert.That(e.Message, Is.EqualTo("2 questions do not fit the model's context of 1000 tokens (max_position_embeddings) with max new tokens 512: "
                + "bench_en.tsv index 7 (700 tokens), bench_en.tsv index 8 (650 tokens); nothing was generated. "
                + "Lower max new tokens to 300 or less to answer every question (the longest prompt has 700 tokens)"));
            Assert.That(e.Describe("--max-new-tokens"), Does.Contain("with --max-new-tokens 512").And.Contain("Lower --max-new-tokens to 300 or less"));
            Assert.That(generator.Measured.Where(m => m.Question == "Q8").Select(m => m.WithImage), Is.EqualTo(new[] { true }), "an image question is measured with its image");
        }
        Assert.That(File.ReadAllLines(journalPath), Has.Length.EqualTo(1), "the journal holds its header only");

        // A limit that stops before them, or a token limit that leaves room, runs.
        Assert.That(Evaluator.Run([en, pt], generator, new EvaluationOptions { MaxNewTokens = 512, Limit = 7 }).Sum(r => r.Rows.Count), Is.EqualTo(11));
        generator.Requests.Clear();
        Assert.That(Evaluator.Run([en, pt], generator, new EvaluationOptions { MaxNewTokens = 300 }).Sum(r => r.Rows.Count), Is.EqualTo(14));

        // Answers already journaled are not generated again, so they are not checked.
        using (var journal = PredictionJournal.Open(Path.Combine(_dir, "j2.jsonl"), new Dictionary<string, string> { ["model"] = "m" }))
        {
            journal.Append("bench_en.tsv", "7", "A");
            var e = Assert.Throws<QuestionsTooLongException>(() => Evaluator.Run([en], generator, new EvaluationOptions { MaxNewTokens = 512 }, journal));
            Assert.That(e!.Questions.Select(q => q.Index), Is.EqualTo(new[] { "8" }));
            Assert.That(e.Message, Does.StartWith("1 question does not fit").And.Contain("Lower max new tokens to 350 or less"));
        }

        // Many: the first five are named, the rest counted; a prompt that fills the context leaves no limit to suggest.
        var all = new LengthScriptedGenerator(1000, (q, _) => q == "Q9" ? 1000 : 900);
        var many = Assert.Throws<QuestionsTooLongException>(() => Evaluator.Run([en], all, new EvaluationOptions { MaxNewTokens = 512 }));
        Assert.That(many!.Message, Does.StartWith("10 questions do not fit").And.Contain("bench_en.tsv index 4 (900 tokens) and 5 more;")
            .And.Contain("No max new tokens makes room: the longest prompt has 1000 tokens"));
        Assert.That(all.Requests, Is.Empty);
    }

    /// <summary>
    /// A row whose image is not valid base64 is never asked (the run reports and skips it), so the up-front check leaves it
    /// out too: counted as a question with an image, it refused a run that would have gone through. With swapped images the
    /// image a question is shown decides, as in the run.
    /// </summary>
    [Test]
    public void ARowTheRunSkipsForBadBase64IsNotCounted()
    {
        var rows = new List<string[]>
        {
            new[] { "0", new string('!', 80), "Q0", "x", "y", "A", "c" }, // over 64 characters: image data, but not base64
            new[] { "1", B64(1), "Q1", "x", "y", "A", "c" },
        };
        var path = Path.Combine(_dir, "damaged_en.tsv");
        File.WriteAllText(path, TsvTable.Format(Columns, rows));
        var bench = BenchmarkFile.Load(path, requireImages: false);
        Assert.That(bench.Rows.Select(r => r.Image is not null), Is.EqualTo(new[] { true, true }));
        // Q0 with an image does not fit with 512 new tokens; everything else does.
        var generator = new LengthScriptedGenerator(1000, (q, image) => q == "Q0" && image ? 900 : 100);
        var options = new EvaluationOptions { MaxNewTokens = 512 };
        Assert.DoesNotThrow(() => Evaluator.CheckContext([bench], generator, options));
        var result = Evaluator.Run([bench], generator, options);
        Assert.That(result[0].Rows.Select(r => r.Row.IndexText), Is.EqualTo(new[] { "1" }));
        Assert.That(result[0].Problems.Select(p => p.Message), Is.EqualTo(new[] { "the image is not valid base64" }));

        // Swapped: Q0 is shown Q1's good image (and does not fit), Q1 the damaged one (skipped).
        var swapped = options with { SwapImages = true };
        var e = Assert.Throws<QuestionsTooLongException>(() => Evaluator.Run([bench], generator, swapped));
        Assert.That(e!.Questions, Is.EqualTo(new[] { ("damaged_en.tsv", "0", 900) }));
    }

    /// <summary>
    /// The check tokenizes every question's prompt once per run: Run checks by itself, and a caller that has checked (the
    /// CLI, which checks before it writes anything) tells Run so, which then measures nothing again. The CLI used to check
    /// and then have Run check again, every prompt tokenized twice.
    /// </summary>
    [Test]
    public void EachQuestionIsMeasuredOncePerRun()
    {
        var en = Bench("bench_en.tsv", 10);
        var pt = Bench("bench_pt.tsv", 4);
        var generator = new LengthScriptedGenerator(1000, (_, image) => 100 + (image ? 50 : 0));
        var options = new EvaluationOptions { MaxNewTokens = 512 };
        Assert.That(Evaluator.Run([en, pt], generator, options).Sum(r => r.Rows.Count), Is.EqualTo(14));
        Assert.That(generator.Measured, Has.Count.EqualTo(14), "Run alone: once each");

        generator.Measured.Clear();
        generator.Requests.Clear();
        Evaluator.CheckContext([en, pt], generator, options);
        Assert.That(generator.Measured, Has.Count.EqualTo(14));
        Assert.That(Evaluator.Run([en, pt], generator, options, contextChecked: true).Sum(r => r.Rows.Count), Is.EqualTo(14));
        Assert.That(generator.Measured, Has.Count.EqualTo(14), "checked by the caller: not measured again");
        Assert.That(generator.Measured.Select(m => m.Question), Is.EqualTo(Enumerable.Range(0, 10).Concat(Enumerable.Range(0, 4)).Select(k => $"Q{k}")));
        Assert.That(generator.Requests, Has.Count.EqualTo(14));
    }

    /// <summary>
    /// A question whose image is valid base64 but no picture the model's loader takes is never asked: the Parrot generator
    /// decodes the image before it generates, and the ImageLoadException makes the run report and skip the row (it is not
    /// asked text-only). The up-front check counted it as a question with an image, its visual tokens included, so near the
    /// context limit it refused a run that would have gone through. The rows: bytes that are no image at all, a PNG whose
    /// chunks and header are sound but whose compressed data is not (only decoding finds it), a text-only question, and
    /// (second file) a sound PNG; the token limit leaves room for every text prompt and for no image prompt. The check's
    /// verdict is the run's, row by row.
    /// </summary>
    [Test]
    public void AnImageTheModelCannotDecodeIsCheckedAsTheRunTreatsIt()
    {
        var parrot = TinyModels.WriteParrot(Path.Combine(_dir, "parrot"));
        var pngPath = TinyModels.WritePng(Path.Combine(_dir, "q.png"), 200, 30, 40);
        var png = File.ReadAllBytes(pngPath);
        var junk = Convert.FromBase64String(B64(0));
        var corrupt = CorruptPngData(png);
        var corruptPath = Path.Combine(_dir, "corrupt.png");
        File.WriteAllBytes(corruptPath, corrupt);
        Assert.DoesNotThrow(() => ImageLoader.Check(corruptPath), "its container and header pass the checks made without decoding");
        Assert.Throws<ImageLoadException>(() => ImageLoader.Load(corrupt), "decoding finds it corrupt");

        using var generator = ParrotAnswerGenerator.Load(parrot);
        // Questions of one length, long enough that a few new tokens reach the context's end.
        string Question(int k) => $"Q{k} " + new string('x', 800);
        string[] Row(int k, byte[]? image) => [$"{k}", image is null ? "" : Convert.ToBase64String(image), Question(k), "x", "y", "A", "c"];
        var benchPath = Path.Combine(_dir, "mixed_en.tsv");
        File.WriteAllText(benchPath, TsvTable.Format(Columns, [Row(0, junk), Row(1, corrupt), Row(2, null)]));
        var bench = BenchmarkFile.Load(benchPath, requireImages: false);
        var goodPath = Path.Combine(_dir, "good_en.tsv");
        File.WriteAllText(goodPath, TsvTable.Format(Columns, [Row(3, png)]));
        var good = BenchmarkFile.Load(goodPath, requireImages: false);
        string prompt = bench.Rows[0].Question.Prompt();
        int withImage = generator.PromptLength(prompt, withImage: true)!.Value, text = generator.PromptLength(prompt, withImage: false)!.Value;
        Assert.That(bench.Rows.Concat(good.Rows).Select(r => generator.PromptLength(r.Question.Prompt(), withImage: true)), Is.All.EqualTo(withImage));
        int maxNew = 1025 - withImage; // one too many for an image prompt, room for a text one
        Assert.That(maxNew, Is.InRange(1, 100), "a short answer");
        Assert.That(text + maxNew, Is.LessThanOrEqualTo(1024));
        var options = new EvaluationOptions { MaxNewTokens = maxNew };

        // What the generator does with each image, asked alone: the bad ones are refused as undecodable (the run skips
        // their rows), the sound one is refused for its length (the run stops).
        foreach (var bad in new[] { junk, corrupt })
        {
            Assert.Throws<ImageLoadException>(() => generator.Answer(new AnswerRequest(bad, prompt, "en", maxNew)));
            Assert.That(generator.TakesImage(bad), Is.False);
        }
        Assert.Throws<PromptTooLongException>(() => generator.Answer(new AnswerRequest(png, prompt, "en", maxNew)));
        Assert.That(generator.TakesImage(png), Is.True);

        // The check passes the file the run goes through: the text question answered, the two images reported and skipped.
        Assert.DoesNotThrow(() => Evaluator.CheckContext([bench], generator, options));
        var result = Evaluator.Run([bench], generator, options)[0];
        Assert.That(result.Rows.Select(r => r.Row.IndexText), Is.EqualTo(new[] { "2" }));
        Assert.That(result.Problems.Select(p => p.Index), Is.EqualTo(new[] { "0", "1" }));
        Assert.That(result.Problems.Select(p => p.Message), Is.All.StartWith("the image cannot be decoded: "));

        // And refuses the sound image that does not fit, naming it alone; the run without the check stops at it the same way.
        var e = Assert.Throws<QuestionsTooLongException>(() => Evaluator.CheckContext([bench, good], generator, options));
        Assert.That(e!.Questions, Is.EqualTo(new[] { ("good_en.tsv", "3", withImage) }));
        Assert.Throws<PromptTooLongException>(() => Evaluator.Run([bench, good], generator, options, contextChecked: true));
    }

    /// <summary>
    /// A model that, as the Parrot generator does, decodes each question's image before it checks the length (refusing an
    /// undecodable one with an ImageLoadException, which the run reports and skips) and then refuses a prompt past its
    /// context; a batch fails whole on either. Images whose first byte is 0xFF are undecodable; a question with an image is
    /// 900 tokens, without one 100, in a context of 1000.
    /// </summary>
    private sealed class DecodingGenerator : IBatchAnswerGenerator, IContextAwareGenerator
    {
        public int ContextLength => 1000;
        public int? PromptLength(string prompt, bool withImage) => withImage ? 900 : 100;
        public bool TakesImage(byte[] image) => image[0] != 0xFF;
        public List<string> Asked { get; } = [];

        public string Answer(AnswerRequest request) => Answer([request])[0];

        public IReadOnlyList<string> Answer(IReadOnlyList<AnswerRequest> requests)
        {
            foreach (var r in requests)
                if (r.Image is not null && !TakesImage(r.Image)) throw new ImageLoadException("the question's image", ImageLoadFailure.Corrupt, "scripted");
            foreach (var r in requests)
                if (PromptLength(r.Prompt, r.Image is not null) + r.MaxNewTokens > ContextLength) throw new PromptTooLongException($"{ScriptedGenerator.QuestionOf(r.Prompt)} does not fit");
            Asked.AddRange(requests.Select(r => ScriptedGenerator.QuestionOf(r.Prompt)));
            return requests.Select(_ => "A").ToList();
        }
    }

    /// <summary>
    /// The check's verdict is the run's whatever picks the questions and their images: the limit, the image swap (the
    /// swapped-in image is the one decoded), the journal's answers, batches (a batch with an undecodable image is asked
    /// again one by one). Rows: Q0 an undecodable image, Q1 text, Q2 a sound image (too long with 512 new tokens), Q3
    /// undecodable, Q4 text. Where the check passes, the run asks every question without a length refusal and skips exactly
    /// the rows shown an undecodable image; where it refuses, it names the rows the run stops at.
    /// </summary>
    [Test]
    public void TheCheckAgreesWithTheRunUnderLimitSwapJournalAndBatches()
    {
        static string Image(byte first) => Convert.ToBase64String([first, .. Enumerable.Range(0, 59).Select(i => (byte)i)]);
        string?[] images = [Image(0xFF), null, Image(0x00), Image(0xFF), null];
        var path = Path.Combine(_dir, "swap_en.tsv");
        File.WriteAllText(path, TsvTable.Format(Columns, images.Select((img, k) => new[] { $"{k}", img ?? "", $"Q{k}", "x", "y", "A", "c" })));
        var bench = BenchmarkFile.Load(path, requireImages: false);
        var journalPath = Path.Combine(_dir, "q2.jsonl");
        var run = new Dictionary<string, string> { ["model"] = "decoding" };
        using (var j = PredictionJournal.Open(journalPath, run)) j.Append("swap_en.tsv", "2", "A");

        // (limit, swap, journal with Q2 answered) → the rows the check refuses (none: it passes).
        var cases = new (int? Limit, bool Swap, bool Journal, string[] Refused)[]
        {
            (null, false, false, ["2"]),     // Q2's sound image
            (2, false, false, []),           // Q0 (undecodable, skipped), Q1
            (null, false, true, []),         // Q2 answered
            (null, true, false, ["0"]),      // shift 2: Q0 is shown Q2's sound image; Q2 and Q3 undecodable ones
            (2, true, false, []),            // shift 1: Q0 is shown Q1's none, Q1 Q0's undecodable one
            (4, true, false, ["0"]),         // shift 2 of 4: Q0 shown Q2's sound image, Q2 Q0's undecodable one
        };
        int passed = 0;
        foreach (var (limit, swap, withJournal, refused) in cases)
            foreach (int batchSize in new[] { 1, 3 })
            {
                string name = $"limit {limit?.ToString() ?? "none"}, swap {swap}, journal {withJournal}, batch {batchSize}";
                var options = new EvaluationOptions { MaxNewTokens = 512, Limit = limit, SwapImages = swap, BatchSize = batchSize };
                using var journal = withJournal ? PredictionJournal.Open(journalPath, run) : null;
                var generator = new DecodingGenerator();
                Exception? check = null;
                try { Evaluator.CheckContext([bench], generator, options, journal); }
                catch (Exception e) { check = e; }
                if (refused.Length > 0)
                {
                    Assert.That(check, Is.TypeOf<QuestionsTooLongException>(), name);
                    Assert.That(((QuestionsTooLongException)check!).Questions.Select(q => q.Index), Is.EqualTo(refused), name);
                    // The run without the check stops at the first of them, with a length refusal.
                    var stop = Assert.Throws<PromptTooLongException>(() => Evaluator.Run([bench], generator, options, journal, contextChecked: true), name);
                    Assert.That(stop!.Message, Does.StartWith($"Q{refused[0]} "), name);
                    continue;
                }
                Assert.That(check, Is.Null, name);
                passed++;
                var result = Evaluator.Run([bench], generator, options, journal, contextChecked: true)[0];
                var rows = limit is int l ? Enumerable.Range(0, l) : Enumerable.Range(0, images.Length);
                var shown = rows.ToDictionary(k => k, k => swap ? images[(k + rows.Count() / 2) % rows.Count()] : images[k]);
                var skipped = shown.Where(kv => kv.Value is not null && Convert.FromBase64String(kv.Value)[0] == 0xFF && !(withJournal && kv.Key == 2))
                    .Select(kv => $"{kv.Key}");
                Assert.That(result.Problems.Select(p => p.Index), Is.EquivalentTo(skipped), name);
                Assert.That(result.Rows.Count + result.Problems.Count, Is.EqualTo(rows.Count()), name);
            }
        Assert.That(passed, Is.EqualTo(6), "three of the six cases pass, in both batch sizes");
    }

    /// <summary>
    /// <paramref name="png"/> with the first IDAT chunk's deflate block marked with the reserved block type (its CRC
    /// recomputed): the chunk walk and the header are intact, the compressed pixel data cannot be inflated.
    /// </summary>
    private static byte[] CorruptPngData(byte[] png)
    {
        var data = (byte[])png.Clone();
        int p = 8;
        while (p + 8 <= data.Length)
        {
            int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(p));
            string type = System.Text.Encoding.ASCII.GetString(data, p + 4, 4);
            if (type == "IDAT")
            {
                data[p + 8 + 2] |= 0x06; // after the 2-byte zlib header: BTYPE = 11, reserved
                uint crc = Crc32(data.AsSpan(p + 4, 4 + length));
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(p + 8 + length), crc);
                return data;
            }
            p += 12 + length;
        }
        throw new InvalidOperationException("no IDAT chunk");
    }

    private static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            crc ^= b;
            for (int i = 0; i < 8; i++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>The generator's lengths are what generation counts: the prompt one past the context is refused naming exactly that length.</summary>
    [Test]
    public void TheParrotGeneratorCountsAsGenerationCounts()
    {
        var parrot = TinyModels.WriteParrot(Path.Combine(_dir, "parrot"));
        var png = File.ReadAllBytes(TinyModels.WritePng(Path.Combine(_dir, "q.png"), 200, 30, 40));
        using var generator = ParrotAnswerGenerator.Load(parrot);
        Assert.That(generator.ContextLength, Is.EqualTo(1024));
        string prompt = "Which colour?\nA. red\nB. blue\n" + BenchmarkLanguages.Instructions["en"];
        int text = generator.PromptLength(prompt, withImage: false)!.Value;
        int image = generator.PromptLength(prompt, withImage: true)!.Value;
        Assert.That(image, Is.EqualTo(text + 1 + 17), "the marker becomes the tower's 17 visual tokens (and its newline one more token)");
        foreach (var (request, length) in new[] { (new AnswerRequest(null, prompt, "en", 1025 - text), text), (new AnswerRequest(png, prompt, "en", 1025 - image), image) })
        {
            var e = Assert.Throws<PromptTooLongException>(() => generator.Answer(request));
            Assert.That(e!.Message, Does.Contain($"the prompt has {length} tokens and {1025 - length} more were asked for"));
        }
    }
}
