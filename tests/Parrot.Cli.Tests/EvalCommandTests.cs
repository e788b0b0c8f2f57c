using System.Text.Json;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;
using Parrot.Tensors;

namespace Parrot.Cli.Tests;

public class EvalCommandTests
{
    /// <summary>A small synthetic world (7 benchmark items per language), a tiny CLIP tower and a tiny random Parrot with a byte-level tokenizer.</summary>
    private static (string Root, string Model, string Bench) Prepare()
    {
        var root = CliRunner.TempDir();
        var world = Path.Combine(root, "world");
        var (code, stdout, stderr) = CliRunner.Run(null, "make-world", "--out", world, "--size", "32", "--stage1", "0", "--stage2", "0", "--bench", "7", "--text", "0");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);

        global::Parrot.Tests.Shared.TinyModels.WriteSmallTower(Path.Combine(root, "tower"));

        var model = Path.Combine(root, "model");
        SaveModel(model, seed: 3);
        return (root, model, Path.Combine(world, "benchmark"));
    }

    /// <summary>A tiny random Parrot (the tower in ../tower) steered to answer "A", with a byte-level tokenizer, saved to <paramref name="model"/>.</summary>
    private static void SaveModel(string model, ulong seed)
    {
        var config = new ParrotConfig
        {
            Text = new Qwen2Config { VocabSize = 259, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000, MaxPositionEmbeddings = 1024 },
            MmHiddenSize = 12, NumExperts = 6, MoeIntermediateSize = 20, UseMoe = true, MmVisionTower = "../tower",
        };
        using (var m = new ParrotForCausalLM(config, seed: seed))
        {
            // Steer the random model to always say "A" first: every token embedding gets a large first component,
            // which dominates the residual stream, and only the lm_head row of byte 'A' reads it.
            var weights = m.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value);
            var embed = weights["model.embed_tokens.weight"].AsSpan<float>();
            for (int t = 0; t < 259; t++) embed[t * 16] = 50;
            var head = weights["lm_head.weight"].AsSpan<float>();
            head['A' * 16] = 10;
            ParrotLoader.Save(m, model);
        }
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), TrainCommandTests.TinyTokenizerJson());
    }

    private static (int Code, string Stdout, string Stderr) Eval(params string[] args)
    {
        var r = CliRunner.Run(null, ["eval", .. args]);
        TestContext.Out.WriteLine($"parrot eval {string.Join(' ', args)} → {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    [Test]
    public void EvaluatesTheWorldBenchmarkWritesConsistentFilesResumesAndRescores()
    {
        var (root, model, bench) = Prepare();
        // A third file: the Russian benchmark with a malformed row appended.
        var bad = Path.Combine(root, "bad_ru.tsv");
        File.WriteAllText(bad, File.ReadAllText(Path.Combine(bench, "mmmb_ru.tsv")) + "7\tonly two fields\n");
        var output = Path.Combine(root, "eval");
        string[] args = ["--model", model, "--data", Path.Combine(bench, "mmmb_en.tsv"), Path.Combine(bench, "mmmb_cn.tsv"), bad, "--out", output, "--max-new-tokens", "1"];
        var (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stderr, Does.Contain("bad_ru.tsv: row 8 (index 7): has 2 fields but the header has 11 — skipped"));
        Assert.That(stderr, Does.Contain("mmmb_cn.tsv: 7/7"), "plain progress lines when stderr is not a terminal");

        var predictionsPath = Path.Combine(output, "predictions.tsv");
        var table = TsvTable.Read(predictionsPath);
        Assert.That(table.Columns, Is.EqualTo(new[] { "index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "dataset", "lang", "prediction", "extracted", "hit" }));
        Assert.That(table.Rows, Has.Count.EqualTo(21));
        string Get(string[] row, string column) => row[table.IndexOf(column)];
        foreach (var row in table.Rows)
        {
            var options = "ABCD".Where(l => Get(row, l.ToString()).Length > 0).Select(l => (l, Get(row, l.ToString()))).ToList();
            var extracted = Get(row, "extracted");
            var question = new MultipleChoiceQuestion(Get(row, "question"), null, options, Get(row, "lang"));
            Assert.That(extracted, Is.EqualTo(question.Extract(Get(row, "prediction")).ToString()), "extracted by rule (cleanup, then matching) from the raw prediction");
            Assert.That(Get(row, "hit"), Is.EqualTo(extracted == Get(row, "answer") ? "1" : "0"));
        }
        Assert.That(table.Rows.Count(r => Get(r, "hit") == "1"), Is.InRange(1, 20), "some answers right, some wrong");
        Assert.That(table.Rows.Select(r => (Get(r, "dataset"), Get(r, "lang"))).Distinct(),
            Is.EqualTo(new[] { ("mmmb_en.tsv", "en"), ("mmmb_cn.tsv", "zh"), ("bad_ru.tsv", "ru") }));

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "summary.json")));
        var datasets = summary.RootElement.GetProperty("datasets");
        Assert.That(datasets.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "mmmb_en.tsv", "mmmb_cn.tsv", "bad_ru.tsv" }));
        foreach (var d in datasets.EnumerateObject())
        {
            var rows = table.Rows.Where(r => Get(r, "dataset") == d.Name).ToList();
            double Mean(IEnumerable<string[]> rs) => rs.Average(r => Get(r, "hit") == "1" ? 1.0 : 0.0);
            Assert.That(d.Value.GetProperty("protocol").GetString(), Is.EqualTo("vanilla"));
            Assert.That(d.Value.GetProperty("n").GetInt32(), Is.EqualTo(7));
            Assert.That(d.Value.GetProperty("overall").GetDouble(), Is.EqualTo(Mean(rows)).Within(1e-12));
            // The steered model answers "A": its accuracy is the share of questions whose answer is A.
            Assert.That(rows.Select(r => Get(r, "prediction")), Has.All.EqualTo("A"));
            Assert.That(d.Value.GetProperty("overall").GetDouble(), Is.EqualTo(rows.Count(r => Get(r, "answer") == "A") / 7.0).Within(1e-12));
            foreach (var key in new[] { "category", "l2-category" })
            {
                var expected = rows.GroupBy(r => Get(r, key)).ToDictionary(g => g.Key, Mean);
                var actual = d.Value.GetProperty(key).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
                Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
                foreach (var (k, v) in expected) Assert.That(actual[k], Is.EqualTo(v).Within(1e-12), $"{d.Name} {key} {k}");
            }
            Assert.That(d.Value.GetProperty("unmatched").GetInt32(), Is.EqualTo(rows.Count(r => Get(r, "extracted") == "Z")));
            Assert.That(d.Value.GetProperty("skipped_rows").GetInt32(), Is.EqualTo(d.Name == "bad_ru.tsv" ? 1 : 0));
            Assert.That(d.Value.GetProperty("language_fidelity").GetProperty("free_form").GetInt32(), Is.InRange(0, 7));
        }
        var md = File.ReadAllText(Path.Combine(output, "summary.md"));
        Assert.That(md, Does.Contain("| mmmb_cn.tsv | zh | vanilla | 7 |").And.Contain("## Accuracy per category (%)").And.Contain("## Skipped rows"));

        // The finished run left no journal: the same command again asks every question and writes the same predictions.
        Assert.That(File.Exists(Path.Combine(output, EvalCommand.JournalName)), Is.False);
        var before = File.ReadAllBytes(predictionsPath);
        (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Not.Contain("resuming"));
        Assert.That(File.ReadAllBytes(predictionsPath), Is.EqualTo(before));

        // Re-scoring the predictions without a model gives the same scores.
        var rescored = Path.Combine(root, "rescored");
        (code, stdout, stderr) = Eval("--score", predictionsPath, "--out", rescored);
        Assert.That(code, Is.EqualTo(0), stderr);
        using var again = JsonDocument.Parse(File.ReadAllText(Path.Combine(rescored, "summary.json")));
        foreach (var d in datasets.EnumerateObject())
        {
            var e = again.RootElement.GetProperty("datasets").GetProperty(d.Name);
            foreach (var key in new[] { "lang", "protocol", "n", "overall", "category", "l2-category", "unmatched", "language_fidelity" })
                Assert.That(e.GetProperty(key).GetRawText(), Is.EqualTo(d.Value.GetProperty(key).GetRawText()), $"{d.Name} {key}");
        }
        Assert.That(File.ReadAllBytes(Path.Combine(rescored, "predictions.tsv")), Is.EqualTo(before));

        // --protocol overrides; grouped without a group column scores each question alone.
        (code, _, stderr) = Eval("--score", predictionsPath, "--out", Path.Combine(root, "grouped"), "--protocol", "grouped");
        Assert.That(code, Is.EqualTo(0), stderr);
        using var grouped = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "grouped", "summary.json")));
        Assert.That(grouped.RootElement.GetProperty("datasets").GetProperty("mmmb_en.tsv").GetProperty("protocol").GetString(), Is.EqualTo("grouped"));
    }

    [Test]
    public void ALimitedRunAgreesWithTheFullRunAKilledRunsSettingsAreKeptAndBadArgumentsAreClearErrors()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        string[] data = ["--data", Path.Combine(bench, "mmmb_ar.tsv"), Path.Combine(bench, "mmmb_tr.tsv")];
        var (code, stdout, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", "2", "--limit", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        var limited = TsvTable.Read(Path.Combine(output, "predictions.tsv"));
        Assert.That(limited.Rows, Has.Count.EqualTo(4));

        (code, stdout, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Not.Contain("resuming"), "the limited run finished: it left no journal");
        var full = TsvTable.Read(Path.Combine(output, "predictions.tsv"));
        Assert.That(full.Rows, Has.Count.EqualTo(14));
        int p = full.IndexOf("prediction");
        var byKey = full.Rows.ToDictionary(r => (r[full.IndexOf("dataset")], r[0]), r => r[p]);
        foreach (var r in limited.Rows) Assert.That(byKey[(r[limited.IndexOf("dataset")], r[0])], Is.EqualTo(r[p]));

        // The journal of a run with --max-new-tokens 2 killed after one answer: a rerun with another limit is refused.
        string[] files = [data[1], data[2]];
        using (var journal = PredictionJournal.Open(Path.Combine(output, EvalCommand.JournalName), EvalCommand.RunKey(model, null, 2, null, DType.F32, files.Select(f => (Path.GetFileName(f), f)))))
            journal.Append("mmmb_ar.tsv", limited.Rows[0][0], "A");
        (code, _, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", "5"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("partial results of another run (max_new_tokens was '2', now '5')"));
        (code, stdout, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("resuming: 1 answers"));
        (code, _, stderr) = Eval("--out", output);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--model"));
        (code, _, stderr) = Eval(["--model", model, .. data, "--out", output, "--protocol", "round-robin"]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("unknown protocol"));
        (code, _, stderr) = Eval("--score", Path.Combine(output, "predictions.tsv"), "--model", model, "--out", output);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("without --model"));
        foreach (var flag in new[] { "--dtype bf16", "--max-new-tokens 4", "--limit 1", "--vision " + model, "--device cpu" })
        {
            (code, _, stderr) = Eval(["--score", Path.Combine(output, "predictions.tsv"), "--out", output, .. flag.Split(' ')]);
            Assert.That((code, stderr.TrimEnd()), Is.EqualTo((2, $"parrot eval: --score re-scores a predictions file: {flag.Split(' ')[0]} applies only when a model answers (--model, --data)")));
        }
        (code, _, stderr) = Eval(["--model", model, "--data", Path.Combine(root, "missing_en.tsv"), "--out", output]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("missing_en.tsv: no such file"));
    }
    /// <summary>
    /// A finished run deletes its journal once predictions.tsv and the summaries are written: its answers are no partial
    /// results any more. Left behind, the journal refused the next run into the folder with another --max-new-tokens as
    /// "partial results of another run", though nothing was partial.
    /// </summary>
    [Test]
    public void AFinishedRunLeavesNoJournalSoTheNextRunMayChangeItsSettings()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        var journal = Path.Combine(output, EvalCommand.JournalName);
        string[] run = ["--model", model, "--data", Path.Combine(bench, "mmmb_en.tsv"), "--out", output, "--limit", "2"];
        var (code, stdout, stderr) = Eval([.. run, "--max-new-tokens", "1"]);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(File.Exists(Path.Combine(output, "predictions.tsv")), Is.True);
        Assert.That(File.Exists(journal), Is.False, "the finished run's journal is deleted");

        (code, stdout, stderr) = Eval([.. run, "--max-new-tokens", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Not.Contain("resuming"));
        Assert.That(TsvTable.Read(Path.Combine(output, "predictions.tsv")).Rows, Has.Count.EqualTo(2));
        Assert.That(File.Exists(journal), Is.False);
    }

    /// <summary>A journal of float32 answers is refused by a run in bf16 (--dtype): its answers come from other arithmetic.</summary>
    [Test]
    public void AJournalOfAnotherDTypeIsRefused()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        var data = Path.Combine(bench, "mmmb_en.tsv");
        Directory.CreateDirectory(output);
        var journal = Path.Combine(output, EvalCommand.JournalName);
        using (var partial = PredictionJournal.Open(journal, EvalCommand.RunKey(model, null, 1, null, DType.F32, [("mmmb_en.tsv", data)])))
            foreach (var row in TsvTable.Read(data).Rows.Take(2)) partial.Append("mmmb_en.tsv", row[0], "A");
        var (code, stdout, stderr) = Eval(["--model", model, "--data", data, "--out", output, "--max-new-tokens", "1", "--limit", "2", "--dtype", "bf16"]);
        Assert.That(code, Is.EqualTo(1), stderr + stdout);
        Assert.That(stderr, Is.EqualTo($"parrot eval: {journal}: partial results of another run (dtype was 'f32', now 'bf16'); delete the file or choose another output folder\n"));

        // A journal of an older parrot, which recorded no dtype: said so, not "was 'unset'".
        File.Delete(journal);
        var older = EvalCommand.RunKey(model, null, 1, null, DType.F32, [("mmmb_en.tsv", data)]);
        older.Remove("dtype");
        using (var partial = PredictionJournal.Open(journal, older)) partial.Append("mmmb_en.tsv", TsvTable.Read(data).Rows[0][0], "A");
        (code, stdout, stderr) = Eval(["--model", model, "--data", data, "--out", output, "--max-new-tokens", "1", "--limit", "2"]);
        Assert.That(code, Is.EqualTo(1), stderr + stdout);
        Assert.That(stderr, Is.EqualTo($"parrot eval: {journal}: partial results written by an older parrot, which did not record dtype; delete the file or choose another output folder\n"));
    }

    /// <summary>
    /// A journal's answers are reused only by the run that wrote them: a benchmark file of the same name with other
    /// questions, or another checkpoint saved into the same model folder, is refused with the journal left as it was. The
    /// run was recorded by paths and settings alone, so both resumed: the new questions were paired with the old run's
    /// answers (a Portuguese answer to an English question) and scored.
    /// </summary>
    [Test]
    public void AJournalOfOtherQuestionsOrAnotherCheckpointIsRefused()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        var data = Path.Combine(root, "data", "mmmb_en.tsv");
        Directory.CreateDirectory(Path.GetDirectoryName(data)!);
        File.Copy(Path.Combine(bench, "mmmb_en.tsv"), data);
        string[] args = ["--model", model, "--data", data, "--out", output, "--max-new-tokens", "1", "--limit", "2"];
        // The journal of this run killed after two answers (a finished run deletes its own).
        Directory.CreateDirectory(output);
        var journal = Path.Combine(output, EvalCommand.JournalName);
        using (var partial = PredictionJournal.Open(journal, EvalCommand.RunKey(model, null, 1, null, DType.F32, [("mmmb_en.tsv", data)])))
            foreach (var row in TsvTable.Read(data).Rows.Take(2)) partial.Append("mmmb_en.tsv", row[0], "A");
        var before = File.ReadAllBytes(journal);

        // Same name, same indexes, other questions: the Portuguese file's rows.
        File.Copy(Path.Combine(bench, "mmmb_pt.tsv"), data, overwrite: true);
        var (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(1), stderr + stdout);
        Assert.That(stderr, Does.StartWith($"parrot eval: {journal}: partial results of another run (data:mmmb_en.tsv was 'sha256:")
            .And.EndWith("'); delete the file or choose another output folder\n"));
        Assert.That(stdout, Does.Not.Contain("resuming"));
        Assert.That(File.ReadAllBytes(journal), Is.EqualTo(before), "the refusal wrote nothing");

        // The first file again, but another checkpoint in the model folder.
        File.Copy(Path.Combine(bench, "mmmb_en.tsv"), data, overwrite: true);
        var other = Path.Combine(root, "other-model");
        SaveModel(other, seed: 4);
        foreach (var file in Directory.GetFiles(other)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)), overwrite: true);
        (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(1), stderr + stdout);
        Assert.That(stderr, Does.StartWith($"parrot eval: {journal}: partial results of another run (model_files was '"));
        Assert.That(File.ReadAllBytes(journal), Is.EqualTo(before), "the refusal wrote nothing");
    }

    /// <summary>
    /// Questions past the model's context with the token limit are found before any answer is generated and refused in one
    /// error (how many, the first few, the context, the limit, what to lower), and nothing is written: before, the run
    /// stopped at the first one it reached, with the journal and the answers before it already written.
    /// </summary>
    [Test]
    public void QuestionsPastTheContextAreRefusedUpFrontWithoutWritingAnything()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        string[] data = ["--data", Path.Combine(bench, "mmmb_en.tsv"), Path.Combine(bench, "mmmb_cn.tsv")];
        var (code, stdout, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", "1020"]);
        Assert.That(code, Is.EqualTo(1), stderr + stdout);
        Assert.That(stderr, Does.StartWith("parrot eval: 14 questions do not fit the model's context of 1024 tokens (max_position_embeddings) with --max-new-tokens 1020: mmmb_en.tsv index 0 (")
            .And.Contain(" and 9 more; nothing was generated. Lower --max-new-tokens to "));
        Assert.That(Directory.Exists(output), Is.False, "no output folder, no journal");

        // The hint's limit runs.
        int suggested = int.Parse(System.Text.RegularExpressions.Regex.Match(stderr, @"Lower --max-new-tokens to (\d+) or less").Groups[1].Value);
        (code, stdout, stderr) = Eval(["--model", model, .. data, "--out", output, "--max-new-tokens", $"{suggested}", "--limit", "1"]);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        var other = Path.Combine(root, "eval-2");
        (code, _, stderr) = Eval(["--model", model, .. data, "--out", other, "--max-new-tokens", $"{suggested + 1}"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("do not fit the model's context").Or.Contain("does not fit the model's context"));
        Assert.That(Directory.Exists(other), Is.False);
    }

    /// <summary>
    /// A resumed run is checked as it runs: questions its journal already answers are not generated again, so they are not
    /// checked (Evaluator.Run's rule). The CLI checked without the journal, so a run whose journal held every answer (e.g.
    /// written before the context rule, or for a question since edited) was refused for questions it would not ask.
    /// </summary>
    [Test]
    public void AResumedRunIsNotRefusedForQuestionsItsJournalAnswers()
    {
        var (root, model, bench) = Prepare();
        var output = Path.Combine(root, "eval");
        string[] files = [Path.Combine(bench, "mmmb_en.tsv"), Path.Combine(bench, "mmmb_cn.tsv")];
        string[] args = ["--model", model, "--data", .. files, "--out", output, "--max-new-tokens", "1020"];
        var (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(1), "none fits with 1020 new tokens");
        Assert.That(stderr, Does.Contain("14 questions do not fit"));

        // A journal of this run (same model, data, token limit, language) that answers all but mmmb_cn.tsv's last question.
        Directory.CreateDirectory(output);
        var run = EvalCommand.RunKey(model, null, 1020, null, DType.F32, files.Select(f => (Path.GetFileName(f), f)));
        var journalPath = Path.Combine(output, EvalCommand.JournalName);
        string last = "";
        using (var journal = PredictionJournal.Open(journalPath, run))
            foreach (var file in files)
            {
                var table = TsvTable.Read(file);
                var indexes = table.Rows.Select(r => r[table.IndexOf("index")]).ToList();
                if (file == files[1]) { last = indexes[^1]; indexes.RemoveAt(indexes.Count - 1); }
                foreach (var index in indexes) journal.Append(Path.GetFileName(file), index, "A");
            }
        var journalBefore = File.ReadAllBytes(journalPath);
        (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(1), "the one question the journal does not answer is checked");
        Assert.That(stderr, Does.Contain($"1 question does not fit the model's context of 1024 tokens (max_position_embeddings) with --max-new-tokens 1020: mmmb_cn.tsv index {last} ("));
        Assert.That(File.ReadAllBytes(journalPath), Is.EqualTo(journalBefore), "the refusal wrote nothing");
        Assert.That(File.Exists(Path.Combine(output, "predictions.tsv")), Is.False);

        // Answered too, nothing is left to generate: the run resumes and scores every answer.
        using (var journal = PredictionJournal.Open(journalPath, run)) journal.Append("mmmb_cn.tsv", last, "A");
        (code, stdout, stderr) = Eval(args);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain("resuming: 14 answers"));
        Assert.That(TsvTable.Read(Path.Combine(output, "predictions.tsv")).Rows, Has.Count.EqualTo(14));
    }

    /// <summary>A model with a context whose prompt lengths come from a script, counting what it measures and answers.</summary>
    private sealed class CountingGenerator(int context, Func<string, int> length) : IAnswerGenerator, IContextAwareGenerator, IDisposable
    {
        public List<string> Measured { get; } = [];
        public int Answered { get; private set; }
        public bool Disposed { get; private set; }

        public string Answer(AnswerRequest request) { Answered++; return "A"; }
        public int ContextLength => context;

        public int? PromptLength(string prompt, bool withImage)
        {
            string question = prompt.Split('\n')[0];
            Measured.Add(question);
            return length(question);
        }

        public void Dispose() => Disposed = true;
    }

    /// <summary>
    /// The run after the arguments (what `parrot eval` does with its model) measures each question's prompt once: it checks
    /// them all before it writes anything, and the run it then starts does not check again (it did, every prompt tokenized
    /// twice). A refusal still writes nothing (no folder; an existing journal byte for byte as it was) and names the CLI's
    /// option; a resumed run measures only the questions its journal does not answer.
    /// </summary>
    [Test]
    public void TheRunMeasuresEachQuestionOnceAndARefusalWritesNothing()
    {
        var root = CliRunner.TempDir();
        var path = Path.Combine(root, "bench_en.tsv");
        File.WriteAllText(path, TsvTable.Format(["index", "image", "question", "A", "B", "answer", "category"],
            Enumerable.Range(0, 6).Select(k => new[] { $"{k}", "", $"Q{k}", "x", "y", "A", "c" })));
        BenchmarkFile[] benchmarks = [BenchmarkFile.Load(path, requireImages: false)];
        var options = new EvaluationOptions { MaxNewTokens = 512 };
        var run = new Dictionary<string, string> { ["model"] = "counting", ["max_new_tokens"] = "512" };
        var fits = new CountingGenerator(1000, _ => 100);

        var output = Path.Combine(root, "eval");
        var results = EvalCommand.Evaluate(benchmarks, () => fits, options, output, run, null);
        Assert.That(results[0].Rows, Has.Count.EqualTo(6));
        Assert.That(fits.Measured, Is.EqualTo(Enumerable.Range(0, 6).Select(k => $"Q{k}")), "each question measured once");
        Assert.That(fits.Answered, Is.EqualTo(6));
        Assert.That(fits.Disposed, Is.True);

        // Q3 does not fit with 512 new tokens: refused, measured once each, nothing written.
        int Q3Long(string q) => q == "Q3" ? 900 : 100;
        var refused = new CountingGenerator(1000, Q3Long);
        var other = Path.Combine(root, "eval-2");
        var e = Assert.Throws<ArgumentException>(() => EvalCommand.Evaluate(benchmarks, () => refused, options, other, run, null));
        Assert.That(e!.Message, Does.StartWith("1 question does not fit the model's context of 1000 tokens (max_position_embeddings) with --max-new-tokens 512: bench_en.tsv index 3 (900 tokens)"));
        Assert.That(refused.Measured, Has.Count.EqualTo(6));
        Assert.That(refused.Answered, Is.Zero);
        Assert.That(refused.Disposed, Is.True);
        Assert.That(Directory.Exists(other), Is.False, "no output folder, no journal");

        // Resumed with Q0–Q2 answered: only Q3–Q5 are measured; the refusal leaves the journal as it was.
        Directory.CreateDirectory(other);
        var journalPath = Path.Combine(other, EvalCommand.JournalName);
        using (var journal = PredictionJournal.Open(journalPath, run))
            for (int k = 0; k < 3; k++) journal.Append("bench_en.tsv", $"{k}", "A");
        var before = File.ReadAllBytes(journalPath);
        var resumed = new CountingGenerator(1000, Q3Long);
        Assert.Throws<ArgumentException>(() => EvalCommand.Evaluate(benchmarks, () => resumed, options, other, run, null));
        Assert.That(resumed.Measured, Is.EqualTo(new[] { "Q3", "Q4", "Q5" }));
        Assert.That(File.ReadAllBytes(journalPath), Is.EqualTo(before), "the refusal wrote nothing");

        // Q3 answered too: Q4 and Q5 are measured once and asked.
        using (var journal = PredictionJournal.Open(journalPath, run)) journal.Append("bench_en.tsv", "3", "A");
        var rest = new CountingGenerator(1000, Q3Long);
        results = EvalCommand.Evaluate(benchmarks, () => rest, options, other, run, null);
        Assert.That(results[0].Rows, Has.Count.EqualTo(6));
        Assert.That(rest.Measured, Is.EqualTo(new[] { "Q4", "Q5" }));
        Assert.That(rest.Answered, Is.EqualTo(2));
    }

    /// <summary>
    /// A journal with no whole line (empty: a run killed before its first answer leaves it so, the header being flushed with
    /// that answer; or torn within the header) is left as it is by a refused run. Opening it before the check wrote the
    /// refused run's header into it, so the run the refusal asks for (a lower --max-new-tokens) was refused as "partial
    /// results of another run". Such a file names no run; the run that goes through starts it over.
    /// </summary>
    [Test]
    public void ARefusedRunLeavesAnUnstartedJournalAsItWas()
    {
        var root = CliRunner.TempDir();
        var path = Path.Combine(root, "bench_en.tsv");
        File.WriteAllText(path, TsvTable.Format(["index", "image", "question", "A", "B", "answer", "category"],
            Enumerable.Range(0, 3).Select(k => new[] { $"{k}", "", $"Q{k}", "x", "y", "A", "c" })));
        BenchmarkFile[] benchmarks = [BenchmarkFile.Load(path, requireImages: false)];
        Dictionary<string, string> Run(int maxNew) => new() { ["model"] = "counting", ["max_new_tokens"] = $"{maxNew}" };
        foreach (var unstarted in new[] { "", "{\"format\": \"parrot-eval-par" })
        {
            var output = Path.Combine(root, $"eval-{unstarted.Length}");
            Directory.CreateDirectory(output);
            var journalPath = Path.Combine(output, EvalCommand.JournalName);
            File.WriteAllText(journalPath, unstarted);
            Assert.That(PredictionJournal.IsStarted(journalPath), Is.False);

            // 900 + 512 > 1000: refused, the journal untouched.
            var refused = new CountingGenerator(1000, _ => 900);
            Assert.Throws<ArgumentException>(() => EvalCommand.Evaluate(benchmarks, () => refused, new EvaluationOptions { MaxNewTokens = 512 }, output, Run(512), null));
            Assert.That(File.ReadAllText(journalPath), Is.EqualTo(unstarted), "the refused run wrote nothing");

            // The lower limit goes through, asking every question; the journal is then started, for that run.
            var fits = new CountingGenerator(1000, _ => 900);
            var results = EvalCommand.Evaluate(benchmarks, () => fits, new EvaluationOptions { MaxNewTokens = 100 }, output, Run(100), null);
            Assert.That(results[0].Rows, Has.Count.EqualTo(3));
            Assert.That(fits.Answered, Is.EqualTo(3));
            Assert.That(PredictionJournal.IsStarted(journalPath), Is.True);
            using var journal = PredictionJournal.Open(journalPath, Run(100));
            Assert.That(journal.Recovered, Is.EqualTo(3));
        }
        Assert.That(PredictionJournal.IsStarted(Path.Combine(root, "none.jsonl")), Is.False);
    }

    [Test]
    public void AFileWithoutAUsableQuestionIsAnErrorNotAZeroScore()
    {
        // These used to end with exit code 0 and "0.00% of 0 units" in summary.json.
        var root = CliRunner.TempDir();
        const string header = "index\timage\tquestion\tA\tB\tanswer\n";
        const string png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
        var empty = Path.Combine(root, "empty_en.tsv");
        File.WriteAllText(empty, header);
        var wrong = Path.Combine(root, "wrong_en.tsv");
        File.WriteAllText(wrong, header + $"0\t{png}\tWhich?\tred\tblue\tE\n1\t0\tWhich?\tred\tblue\tblue\n");
        var good = Path.Combine(root, "good_en.tsv");
        File.WriteAllText(good, header + $"0\t{png}\tWhich?\tred\tblue\tA\n");
        var output = Path.Combine(root, "eval");
        // The files are checked before the model is loaded (it does not exist here).
        var model = Path.Combine(root, "no-model");

        var (code, _, stderr) = Eval("--model", model, "--data", good, empty, "--out", output);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("empty_en.tsv: no questions (the table has a header but no data rows)"));
        (code, _, stderr) = Eval("--model", model, "--data", wrong, "--out", output);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("wrong_en.tsv: row 2 (index 1): the answer 'blue' is not one of the options A, B — skipped")
            .And.Contain("wrong_en.tsv: no usable question: all 2 data rows were skipped"));
        Assert.That(Directory.Exists(output), Is.False, "nothing written");

        var predictions = Path.Combine(root, "predictions_en.tsv");
        File.WriteAllText(predictions, "index\tquestion\tA\tB\tanswer\tprediction\n0\tWhich?\tred\tblue\tC\tA\n");
        (code, _, stderr) = Eval("--score", predictions, "--out", output);
        Assert.That(code, Is.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("no usable question: all 1 data rows were skipped"));
        Assert.That(File.Exists(Path.Combine(output, "summary.json")), Is.False);
    }

    [Test]
    public void AKilledRunResumesWhereItStoppedAndEndsLikeAStraightRun()
    {
        var (root, model, bench) = Prepare();
        string[] data = ["--data", Path.Combine(bench, "mmmb_pt.tsv"), Path.Combine(bench, "mmmb_ru.tsv")];
        var straight = Path.Combine(root, "straight");
        var (code, _, stderr) = Eval(["--model", model, .. data, "--out", straight, "--max-new-tokens", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr);

        var killed = Path.Combine(root, "killed");
        var journal = Path.Combine(killed, "predictions.partial.jsonl");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        string[] command = [Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll"), "eval", "--model", model, .. data, "--out", killed, "--max-new-tokens", "2"];
        foreach (var a in command) psi.ArgumentList.Add(a);
        using (var p = System.Diagnostics.Process.Start(psi)!)
        {
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            static int Lines(string path) { try { return File.Exists(path) ? File.ReadAllLines(path).Length : 0; } catch (IOException) { return 0; } }
            while (Lines(journal) < 3 && !p.HasExited && sw.Elapsed.TotalSeconds < 120) Thread.Sleep(2);
            if (!p.HasExited) p.Kill(); // SIGKILL: no chance to clean up
            p.WaitForExit();
        }
        Assert.That(File.Exists(Path.Combine(killed, "predictions.tsv")), Is.False, "killed before the end");
        int answered = File.ReadAllLines(journal).Length - 1;
        TestContext.Out.WriteLine($"killed after {answered} answers");
        if (answered >= 14) Assert.Inconclusive("the run finished before it could be killed");

        (code, var stdout, stderr) = Eval(["--model", model, .. data, "--out", killed, "--max-new-tokens", "2"]);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain($"resuming: {answered} answers"));
        // Each question answered once: the files' last progress lines count the resumed answers, the rest were generated.
        var resumed = System.Text.RegularExpressions.Regex.Matches(stderr, @": 7/7 \((\d+) resumed\)").Select(m => int.Parse(m.Groups[1].Value)).ToList();
        Assert.That(resumed, Has.Count.EqualTo(2));
        Assert.That(resumed.Sum(), Is.EqualTo(answered));
        Assert.That(File.Exists(journal), Is.False, "the finished run deleted its journal");
        Assert.That(File.ReadAllBytes(Path.Combine(killed, "predictions.tsv")), Is.EqualTo(File.ReadAllBytes(Path.Combine(straight, "predictions.tsv"))));
        Assert.That(File.ReadAllText(Path.Combine(killed, "summary.json")), Is.EqualTo(File.ReadAllText(Path.Combine(straight, "summary.json"))));
    }
}
