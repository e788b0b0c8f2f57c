using System.Text.Json;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Tests.Evaluation;

/// <summary>A model that answers from a script (question text → answer) and records what it was asked.</summary>
internal sealed class ScriptedGenerator(Func<AnswerRequest, string> script) : IAnswerGenerator
{
    public List<AnswerRequest> Requests { get; } = [];
    public int? FailAfter { get; init; }

    public string Answer(AnswerRequest request)
    {
        if (FailAfter is int n && Requests.Count >= n) throw new OperationCanceledException("killed");
        Requests.Add(request);
        return script(request);
    }

    /// <summary>The question of a prompt: the line before the first option line.</summary>
    public static string QuestionOf(string prompt) => prompt.Split('\n').TakeWhile(l => !l.StartsWith("A. ", StringComparison.Ordinal)).Last();
}

/// <summary>A scripted model that also takes batches, recording each call's questions.</summary>
internal sealed class ScriptedBatchGenerator(Func<AnswerRequest, string> script) : IBatchAnswerGenerator
{
    public List<string[]> Calls { get; } = [];

    public string Answer(AnswerRequest request)
    {
        Calls.Add([ScriptedGenerator.QuestionOf(request.Prompt)]);
        return script(request);
    }

    public IReadOnlyList<string> Answer(IReadOnlyList<AnswerRequest> requests)
    {
        Calls.Add(requests.Select(r => ScriptedGenerator.QuestionOf(r.Prompt)).ToArray());
        return requests.Select(script).ToList(); // one bad image fails the whole batch, as ParrotAnswerGenerator does
    }
}

public class HarnessTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "parrot-eval-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Distinct fake image bytes for row k (long enough that their base64 is not a reference).</summary>
    private static byte[] Image(int k) => Enumerable.Range(0, 60).Select(i => (byte)(k * 31 + i * 7)).ToArray();

    private static string B64(int k) => Convert.ToBase64String(Image(k));

    private string WriteTsv(string name, string[] columns, IEnumerable<string[]> rows, string extraRawLines = "")
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, TsvTable.Format(columns, rows.ToList()) + extraRawLines);
        return path;
    }

    private static readonly string[] Columns = ["index", "image", "question", "hint", "A", "B", "C", "D", "E", "answer", "category", "l2-category"];

    [Test]
    public void ReadsRowsResolvesImageReferencesAndReportsMalformedRowsWithTheirIndex()
    {
        var path = WriteTsv("bench_pt.tsv", Columns,
        [
            ["0", B64(0), "Q0", "Look left.", "red", "blue", "green", "white", "", "B", "color", "attribute"],
            ["1", "0", "Q1", "nan", "yes", "no", "", "nan", "", "A", "existence", "existence"],
            ["2", B64(2), "Q2", "", "1", "2", "3", "4", "5", "E", "count", "counting"],
            ["4", B64(4), "Q4", "", "x", "y", "", "", "", "F", "count", "counting"],
            ["five", B64(5), "Q5", "", "x", "y", "", "", "", "A", "count", "counting"],
            ["6", "99", "Q6", "", "x", "y", "", "", "", "A", "count", "counting"],
            ["0", B64(7), "Q7", "", "x", "y", "", "", "", "A", "count", "counting"],
            ["8", B64(8), "Q8", "", "only", "", "", "", "", "A", "count", "counting"],
            ["10", "iVBORw0KGgo=", "Q10", "", "x", "y", "", "", "", "A", "count", "counting"],
        ], "\"3\"\t\"too few fields\"\n");
        var file = BenchmarkFile.Load(path);
        Assert.That(file.Language, Is.EqualTo("pt"));
        Assert.That(file.Rows.Select(r => r.Index), Is.EqualTo(new long[] { 0, 1, 2 }));
        Assert.That(file.Rows[1].Image, Is.EqualTo(B64(0)), "an image field of ≤ 64 characters refers to that row's image");
        Assert.That(file.Rows[1].Question.Options.Select(o => o.Letter), Is.EqualTo(new[] { 'A', 'B' }), "empty and NaN options are absent");
        Assert.That(file.Rows[1].Question.Hint, Is.Null);
        Assert.That(file.Rows[2].Question.Options, Has.Count.EqualTo(5));
        Assert.That(file.Rows[2].Answer, Is.EqualTo('E'));
        Assert.That(file.Rows[0].Question.Prompt(), Is.EqualTo("Look left.\nQ0\nA. red\nB. blue\nC. green\nD. white\nResponda diretamente com a letra da opção das escolhas dadas."));
        Assert.That(file.Rows[0].L2Category, Is.EqualTo("attribute"));

        var problems = file.Problems.Select(p => p.ToString()).ToList();
        Assert.That(problems, Has.Count.EqualTo(7), string.Join("\n", problems));
        Assert.That(file.Problems.Select(p => p.Row), Is.EqualTo(new[] { 4, 5, 6, 7, 8, 9, 10 }));
        Assert.That(problems[0], Does.Contain("index 4").And.Contain("'F' is not one of the options A, B"));
        Assert.That(problems[1], Does.Contain("'five' is not an integer"));
        Assert.That(problems[2], Does.Contain("index 6").And.Contain("refers to no row"));
        Assert.That(problems[3], Does.Contain("index 0").And.Contain("earlier row"));
        Assert.That(problems[4], Does.Contain("index 8").And.Contain("at least two"));
        Assert.That(problems[6], Does.Contain("row 10 (index 3)").And.Contain("fields"));
        // A short damaged base64 field was reported as a reference "to no row with an image".
        Assert.That(problems[5], Does.Contain("row 9 (index 10)").And.Contain("'iVBORw0KGgo=' is neither base64 image data (over 64 characters) nor the index of another row"));

        Assert.That(BenchmarkFile.Load(path, "cn").Language, Is.EqualTo("zh"), "--lang overrides the name");
        var nameless = WriteTsv("bench.tsv", Columns, [["0", B64(0), "Q0", "", "a", "b", "", "", "", "A", "", ""]]);
        Assert.That(() => BenchmarkFile.Load(nameless), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("--lang"));
        var noAnswer = WriteTsv("x_en.tsv", ["index", "image", "question", "A", "B"], [["0", B64(0), "Q", "a", "b"]]);
        Assert.That(() => BenchmarkFile.Load(noAnswer), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("'answer'"));
    }

    private static readonly string[] Small = ["index", "image", "question", "A", "B", "C", "answer", "category", "l2-category"];

    [Test]
    public void VanillaRunAsksWithTheBenchmarkPromptExtractsAndScores()
    {
        var path = WriteTsv("mmmb_ar.tsv", Small,
        [
            ["1", B64(1), "Q1", "red", "blue", "green", "A", "color", "attribute"],
            ["2", "1", "Q2", "one", "two", "three", "B", "count", "counting"],
            ["3", B64(3), "Q3", "yes", "no", "", "B", "existence", "existence"],
            ["4", B64(4), "Q4", "yes", "no", "", "A", "existence", "existence"],
        ]);
        var answers = new Dictionary<string, string> { ["Q1"] = "A", ["Q2"] = "The answer is two.", ["Q3"] = "A", ["Q4"] = "لا أعرف" };
        var model = new ScriptedGenerator(r => answers[ScriptedGenerator.QuestionOf(r.Prompt)]);
        var file = BenchmarkFile.Load(path);
        Assert.That(file.DefaultProtocol, Is.EqualTo(ScoringProtocol.Vanilla));
        var result = Evaluator.Run([file], model, new EvaluationOptions { MaxNewTokens = 7 })[0];

        Assert.That(model.Requests, Has.Count.EqualTo(4));
        Assert.That(model.Requests[1].Image, Is.EqualTo(Image(1)), "row 2 reuses row 1's image");
        Assert.That(model.Requests.All(r => r.Language == "ar" && r.MaxNewTokens == 7), Is.True);
        Assert.That(model.Requests[2].Prompt, Is.EqualTo("Q3\nA. yes\nB. no\nأجب مباشرةً بحرف الخيار من الاختيارات المعطاة."));
        Assert.That(result.Rows.Select(r => r.Extracted), Is.EqualTo(new[] { 'A', 'B', 'A', 'Z' }));
        Assert.That(result.Rows.Select(r => r.Hit), Is.EqualTo(new[] { true, true, false, false }));
        Assert.That(result.Unmatched.Select(u => u.Row.Index), Is.EqualTo(new long[] { 4 }));
        Assert.That(result.Score.Overall, Is.EqualTo(0.5));
        Assert.That(result.Score.Count, Is.EqualTo(4));
        Assert.That(result.Score.PerCategory, Is.EqualTo(new Dictionary<string, double> { ["color"] = 1, ["count"] = 1, ["existence"] = 0 }));
        Assert.That(result.Score.PerL2Category["counting"], Is.EqualTo(1));
        // Two free-form answers: "The answer is two." (English, asked in Arabic) and the Arabic one.
        Assert.That(result.Fidelity, Is.EqualTo(new LanguageFidelity(2, 1, 0)));

        EvaluationReport.Write(_dir, [result]);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "summary.json")));
        var d = summary.RootElement.GetProperty("datasets").GetProperty("mmmb_ar.tsv");
        Assert.That(d.GetProperty("protocol").GetString(), Is.EqualTo("vanilla"));
        Assert.That(d.GetProperty("n").GetInt32(), Is.EqualTo(4));
        Assert.That(d.GetProperty("overall").GetDouble(), Is.EqualTo(0.5));
        Assert.That(d.GetProperty("category").GetProperty("existence").GetDouble(), Is.EqualTo(0));
        Assert.That(d.GetProperty("l2-category").GetProperty("attribute").GetDouble(), Is.EqualTo(1));
        Assert.That(d.GetProperty("unmatched").GetInt32(), Is.EqualTo(1));
        Assert.That(d.GetProperty("language_fidelity").GetProperty("rate").GetDouble(), Is.EqualTo(0.5));
        var md = File.ReadAllText(Path.Combine(_dir, "summary.md"));
        Assert.That(md, Does.Contain("| mmmb_ar.tsv | ar | vanilla | 4 | 50.00 | 1 of 4 |"));
        Assert.That(md, Does.Contain("| existence | 0.00 |").And.Contain("لا أعرف"));
    }

    [Test]
    public void SwapImagesShowsEachQuestionTheImageHalfTheFileAwayAndKeepsEverythingElse()
    {
        // Five questions, one with a reference to another row's image: question k sees the image of question (k + 2) mod 5.
        var path = WriteTsv("mmmb_tr.tsv", Small,
        [
            ["10", B64(0), "Q0", "a", "b", "", "A", "color", ""],
            ["11", B64(1), "Q1", "a", "b", "", "B", "color", ""],
            ["12", "10", "Q2", "a", "b", "", "A", "count", ""],
            ["13", B64(3), "Q3", "a", "b", "", "B", "count", ""],
            ["14", B64(4), "Q4", "a", "b", "", "A", "count", ""],
        ]);
        var file = BenchmarkFile.Load(path);
        // The scripted model answers A exactly when it is shown image 0 (rows 10 and 12 hold it).
        string Script(AnswerRequest r) => r.Image!.SequenceEqual(Image(0)) ? "A" : "B";
        var own = new ScriptedGenerator(Script);
        var swapped = new ScriptedGenerator(Script);
        var a = Evaluator.Run([file], own)[0];
        var b = Evaluator.Run([file], swapped, new EvaluationOptions { SwapImages = true, MaxNewTokens = 3 })[0];
        int[] shownOwn = [0, 1, 0, 3, 4];
        Assert.That(own.Requests.Select(r => r.Image), Is.EqualTo(shownOwn.Select(Image)));
        Assert.That(swapped.Requests.Select(r => r.Image), Is.EqualTo(Enumerable.Range(0, 5).Select(k => Image(shownOwn[(k + 2) % 5]))));
        Assert.That(swapped.Requests.Select(r => r.Prompt), Is.EqualTo(own.Requests.Select(r => r.Prompt)), "only the image changes");
        Assert.That(swapped.Requests.All(r => r.MaxNewTokens == 3 && r.Language == "tr"), Is.True);
        Assert.That(a.Rows.Select(r => r.Extracted), Is.EqualTo("ABABB".ToCharArray()));
        Assert.That(a.Score.Overall, Is.EqualTo(0.8));
        Assert.That(b.Rows.Select(r => r.Extracted), Is.EqualTo("ABBAB".ToCharArray()));
        Assert.That(b.Rows.Select(r => r.Row.Index), Is.EqualTo(a.Rows.Select(r => r.Row.Index)), "scored against each question's own answer");
        Assert.That(b.Score.Overall, Is.EqualTo(0.4));
        // With --limit the swap stays within the questions evaluated: 3 questions, question k sees image (k + 1) mod 3.
        var limited = new ScriptedGenerator(Script);
        Evaluator.Run([file], limited, new EvaluationOptions { SwapImages = true, Limit = 3 });
        Assert.That(limited.Requests.Select(r => r.Image), Is.EqualTo(new[] { 1, 0, 0 }.Select(Image)));

        using var journal = PredictionJournal.Open(Path.Combine(_dir, "j.jsonl"), new Dictionary<string, string>());
        Assert.That(() => Evaluator.Run([file], own, new EvaluationOptions { SwapImages = true }, journal), Throws.ArgumentException.With.Message.Contain("journal"));
    }

    [Test]
    public void CircularProtocolNeedsEveryRotatedCopyRightAndProtocolCanBeOverridden()
    {
        // Question 1 in three rotations (right answer: "cat" moves A → B → C), question 2 in two.
        var path = WriteTsv("MMBench_DEV_tr.tsv", Small,
        [
            ["1", B64(1), "Q1", "cat", "dog", "cow", "A", "animals", "x"],
            ["2", B64(2), "Q2", "sun", "moon", "", "B", "sky", "y"],
            ["1000001", "1", "Q1r1", "cow", "cat", "dog", "B", "animals-copy", "x"],
            ["1000002", "2", "Q2r1", "moon", "sun", "", "A", "sky", "y"],
            ["2000001", "1", "Q1r2", "dog", "cow", "cat", "C", "animals-copy", "x"],
        ]);
        var answers = new Dictionary<string, string> { ["Q1"] = "A", ["Q1r1"] = "B", ["Q1r2"] = "A", ["Q2"] = "B", ["Q2r1"] = "A" };
        var file = BenchmarkFile.Load(path);
        Assert.That(file.DefaultProtocol, Is.EqualTo(ScoringProtocol.Circular));
        var model = new ScriptedGenerator(r => answers[ScriptedGenerator.QuestionOf(r.Prompt)]);
        var circular = Evaluator.Run([file], model)[0];
        Assert.That(model.Requests.Select(r => r.Image), Has.All.Not.Null);
        Assert.That(circular.Score.Count, Is.EqualTo(2));
        Assert.That(circular.Score.Overall, Is.EqualTo(0.5), "question 1 fails on its third rotation");
        Assert.That(circular.Score.PerCategory, Is.EqualTo(new Dictionary<string, double> { ["animals"] = 0, ["sky"] = 1 }), "a unit takes the original row's category");

        var vanilla = Evaluator.Run([file], new ScriptedGenerator(r => answers[ScriptedGenerator.QuestionOf(r.Prompt)]), new EvaluationOptions { Protocol = ScoringProtocol.Vanilla })[0];
        Assert.That(vanilla.Score.Overall, Is.EqualTo(4 / 5.0));

        // --limit counts units: the first circular unit is question 1 with all its copies.
        var limited = new ScriptedGenerator(r => answers[ScriptedGenerator.QuestionOf(r.Prompt)]);
        var one = Evaluator.Run([file], limited, new EvaluationOptions { Limit = 1 })[0];
        Assert.That(one.Rows.Select(r => r.Row.Index), Is.EqualTo(new long[] { 1, 1000001, 2000001 }));
        Assert.That(one.Score.Count, Is.EqualTo(1));
    }

    [Test]
    public void GroupedProtocolScoresAGroupOnlyWhenEveryQuestionIsRight()
    {
        string[] columns = ["index", "image", "question", "A", "B", "answer", "category", "group"];
        var path = WriteTsv("mmmb_ru.tsv", columns,
        [
            ["1", B64(1), "Q1", "да", "нет", "A", "c1", "g1"],
            ["2", "1", "Q2", "да", "нет", "B", "c1", "g1"],
            ["3", B64(3), "Q3", "да", "нет", "A", "c2", "g2"],
            ["4", "3", "Q4", "да", "нет", "B", "c2", "g2"],
            ["5", B64(5), "Q5", "да", "нет", "A", "c2", ""],
        ]);
        var answers = new Dictionary<string, string> { ["Q1"] = "A", ["Q2"] = "B", ["Q3"] = "A", ["Q4"] = "A", ["Q5"] = "Да" };
        var file = BenchmarkFile.Load(path);
        Assert.That(file.DefaultProtocol, Is.EqualTo(ScoringProtocol.Grouped));
        var r = Evaluator.Run([file], new ScriptedGenerator(q => answers[ScriptedGenerator.QuestionOf(q.Prompt)]))[0];
        Assert.That(r.Score.Count, Is.EqualTo(3), "two groups and a row without a group");
        Assert.That(r.Score.Overall, Is.EqualTo(2 / 3.0));
        Assert.That(r.Score.PerCategory["c2"], Is.EqualTo(0.5));
        Assert.That(r.Rows[4].Extracted, Is.EqualTo('A'), "the option's text, in any case");
        Assert.That(r.Fidelity, Is.EqualTo(new LanguageFidelity(1, 1, 0)));
    }

    [Test]
    public void PredictionsRoundTripWithTabsQuotesAndNewlinesAndRescoreTheSame()
    {
        var path = WriteTsv("mmmb_en.tsv", Small,
        [
            ["1", B64(1), "Which \"one\"?", "a\ttab", "b", "", "A", "color", "attribute"],
            ["2", B64(2), "Q2", "x", "y", "z", "C", "count", "counting"],
            ["3", B64(3), "Q3", "x", "y", "z", "B", "count", "counting"],
        ]);
        string[] tricky = ["A\t(with a tab)", "I'd say \"C\",\nsurely\r\nC", "\"\"\n\t"];
        int k = 0;
        var result = Evaluator.Run([BenchmarkFile.Load(path)], new ScriptedGenerator(_ => tricky[k++]))[0];
        EvaluationReport.Write(_dir, [result]);
        var text = File.ReadAllText(Path.Combine(_dir, "predictions.tsv"));
        var lines = text.Split('\n');
        Assert.That(lines[0], Is.EqualTo("\"index\"\t\"question\"\t\"A\"\t\"B\"\t\"C\"\t\"answer\"\t\"category\"\t\"l2-category\"\t\"dataset\"\t\"lang\"\t\"prediction\"\t\"extracted\"\t\"hit\""));
        Assert.That(lines[1], Is.EqualTo("\"1\"\t\"Which \"\"one\"\"?\"\t\"a\ttab\"\t\"b\"\t\"\"\t\"A\"\t\"color\"\t\"attribute\"\t\"mmmb_en.tsv\"\t\"en\"\t\"A\t(with a tab)\"\t\"A\"\t\"1\""));
        var table = TsvTable.Read(Path.Combine(_dir, "predictions.tsv"));
        Assert.That(table.Rows.Select(r => r[table.IndexOf("prediction")]), Is.EqualTo(tricky));
        // Row 2 is English, so Parrot's cleanup runs first: "I" followed by the apostrophe becomes the answer "I" — no option.
        Assert.That(table.Rows.Select(r => r[table.IndexOf("extracted")]), Is.EqualTo(new[] { "A", "Z", "Z" }));
        Assert.That(table.Rows.Select(r => r[table.IndexOf("hit")]), Is.EqualTo(new[] { "1", "0", "0" }));

        var rescored = Evaluator.ScorePredictions(table, "predictions.tsv");
        Assert.That(rescored, Has.Count.EqualTo(1));
        Assert.That(rescored[0].File.Name, Is.EqualTo("mmmb_en.tsv"), "datasets come from the dataset column");
        Assert.That(EvaluationReport.SummaryJson(rescored), Is.EqualTo(File.ReadAllText(Path.Combine(_dir, "summary.json"))));
        var again = Path.Combine(_dir, "again");
        EvaluationReport.Write(again, rescored);
        Assert.That(File.ReadAllText(Path.Combine(again, "predictions.tsv")), Is.EqualTo(text));
    }

    [Test]
    public void ScoringAVlmEvalKitPredictionsFileSplitsNothingAndTakesTheLanguageFromItsName()
    {
        var table = TsvTable.Parse("index\tquestion\tA\tB\tanswer\tprediction\n1\tQ\tyes\tno\tA\tA\n2\tQ\tyes\tno\tB\tyes\n1000001\tQ\tno\tyes\tB\tB\n", "Parrot_MMBench_DEV_ru.tsv");
        var r = Evaluator.ScorePredictions(table, "Parrot_MMBench_DEV_ru.tsv");
        Assert.That(r[0].File.Language, Is.EqualTo("ru"));
        Assert.That(r[0].Protocol, Is.EqualTo(ScoringProtocol.Circular));
        Assert.That(r[0].Score.Count, Is.EqualTo(2));
        Assert.That(r[0].Score.Overall, Is.EqualTo(0.5));
        Assert.That(Evaluator.ScorePredictions(table, "x.tsv", "en", ScoringProtocol.Vanilla)[0].Score.Overall, Is.EqualTo(2 / 3.0));
        Assert.That(() => Evaluator.ScorePredictions(TsvTable.Parse("index\tquestion\tA\tB\tanswer\n1\tQ\ta\tb\tA\n", "p_en.tsv"), "p_en.tsv"),
            Throws.InstanceOf<InvalidDataException>().With.Message.Contain("'prediction'"));
    }

    [Test]
    public void AKilledRunResumesFromItsJournalAndATornLastLineIsDropped()
    {
        var rows = Enumerable.Range(1, 6).Select(i => new[] { i.ToString(), B64(i), $"Q{i}", "yes", "no", "", i % 2 == 0 ? "A" : "B", "c", "l" }).ToList();
        var file = BenchmarkFile.Load(WriteTsv("mmmb_zh.tsv", Small, rows));
        string Script(AnswerRequest r) => ScriptedGenerator.QuestionOf(r.Prompt) is var q && int.Parse(q[1..]) % 3 == 0 ? "B\t\"是\"\n" : "A";
        var straight = Evaluator.Run([file], new ScriptedGenerator(Script))[0];

        var journalPath = Path.Combine(_dir, "partial.jsonl");
        var run = new Dictionary<string, string> { ["model"] = "m", ["max_new_tokens"] = "512" };
        using (var journal = PredictionJournal.Open(journalPath, run))
            Assert.That(() => Evaluator.Run([file], new ScriptedGenerator(Script) { FailAfter = 4 }, null, journal), Throws.InstanceOf<OperationCanceledException>());
        File.AppendAllText(journalPath, "{\"dataset\": \"mmmb_zh.tsv\", \"ind"); // the process died mid-line

        var resumedModel = new ScriptedGenerator(Script);
        List<DatasetResult> resumed;
        using (var journal = PredictionJournal.Open(journalPath, run))
        {
            Assert.That(journal.Recovered, Is.EqualTo(4));
            var progress = new List<EvaluationProgress>();
            resumed = Evaluator.Run([file], resumedModel, null, journal, progress.Add);
            Assert.That(progress[^1], Is.EqualTo(new EvaluationProgress("mmmb_zh.tsv", 6, 6, 4)));
        }
        Assert.That(resumedModel.Requests.Select(r => ScriptedGenerator.QuestionOf(r.Prompt)), Is.EqualTo(new[] { "Q5", "Q6" }));
        Assert.That(resumed[0].Rows.Select(r => (r.Prediction, r.Hit)), Is.EqualTo(straight.Rows.Select(r => (r.Prediction, r.Hit))));
        Assert.That(EvaluationReport.SummaryJson(resumed), Is.EqualTo(EvaluationReport.SummaryJson([straight])));
        Assert.That(File.ReadAllLines(journalPath), Has.Length.EqualTo(1 + 6));

        var other = new Dictionary<string, string> { ["model"] = "m", ["max_new_tokens"] = "16" };
        Assert.That(() => PredictionJournal.Open(journalPath, other), Throws.InstanceOf<InvalidDataException>().With.Message.Contain("max_new_tokens"));
    }

    [Test]
    public void ARowWhoseImageCannotBeDecodedIsReportedAndTheRunGoesOn()
    {
        var path = WriteTsv("mmmb_en.tsv", Small,
        [
            ["1", new string('@', 80), "Q1", "a", "b", "", "A", "c", "l"],
            ["2", B64(2), "Q2", "a", "b", "", "A", "c", "l"],
            ["3", B64(3), "Q3", "a", "b", "", "A", "c", "l"],
        ]);
        var model = new ScriptedGenerator(r => ScriptedGenerator.QuestionOf(r.Prompt) == "Q2"
            ? throw new ImageLoadException("the question's image", ImageLoadFailure.Corrupt, "bad PNG")
            : "A");
        var result = Evaluator.Run([BenchmarkFile.Load(path)], model)[0];
        Assert.That(result.Rows.Select(r => r.Row.Index), Is.EqualTo(new long[] { 3 }));
        Assert.That(result.Problems.Select(p => p.ToString()), Is.EqualTo(new[]
        {
            "row 1 (index 1): the image is not valid base64",
            "row 2 (index 2): the image cannot be decoded: " + new ImageLoadException("the question's image", ImageLoadFailure.Corrupt, "bad PNG").Message,
        }));
        Assert.That(result.Score.Overall, Is.EqualTo(1));
    }

    [Test]
    public void BatchesSkipJournaledAndBadRowsAndFallBackToOneByOneOnAnUndecodableImage()
    {
        var rows = Enumerable.Range(1, 9).Select(i => new[] { i.ToString(), i == 4 ? new string('@', 80) : B64(i), $"Q{i}", "yes", "no", "", "A", "c", "l" }).ToList();
        var file = BenchmarkFile.Load(WriteTsv("mmmb_en.tsv", Small, rows));
        string Script(AnswerRequest r) => ScriptedGenerator.QuestionOf(r.Prompt) == "Q8"
            ? throw new ImageLoadException("the question's image", ImageLoadFailure.Corrupt, "bad PNG") : "A";
        var journalPath = Path.Combine(_dir, "partial.jsonl");
        var run = new Dictionary<string, string> { ["model"] = "m" };
        using (var journal = PredictionJournal.Open(journalPath, run)) journal.Append("mmmb_en.tsv", "6", "B");

        var model = new ScriptedBatchGenerator(Script);
        var progress = new List<EvaluationProgress>();
        DatasetResult result;
        using (var journal = PredictionJournal.Open(journalPath, run))
            result = Evaluator.Run([file], model, new EvaluationOptions { BatchSize = 2 }, journal, progress.Add)[0];
        // Q1 Q2 | Q3 (flushed by the bad base64 of row 4) | Q5 (flushed by the journaled row 6) | Q7 Q8 fails → Q7, Q8 alone | Q9.
        Assert.That(model.Calls, Is.EqualTo(new[] { new[] { "Q1", "Q2" }, ["Q3"], ["Q5"], ["Q7", "Q8"], ["Q7"], ["Q8"], ["Q9"] }));
        Assert.That(result.Rows.Select(r => (r.Row.Index, r.Prediction)), Is.EqualTo(new[] { (1L, "A"), (2L, "A"), (3L, "A"), (5L, "A"), (6L, "B"), (7L, "A"), (9L, "A") }));
        Assert.That(result.Problems.Select(p => p.Row), Is.EqualTo(new[] { 4, 8 }));
        Assert.That(progress.Select(p => p.Done), Is.EqualTo(Enumerable.Range(0, 10)), "one report per row, in order");
        Assert.That(progress[^1], Is.EqualTo(new EvaluationProgress("mmmb_en.tsv", 9, 9, 1)));
        Assert.That(File.ReadAllLines(journalPath), Has.Length.EqualTo(1 + 7), "header, then every answer once");
        Assert.That(() => Evaluator.Run([file], model, new EvaluationOptions { BatchSize = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
