using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Parrot.Parrot.Evaluation;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `parrot eval --model DIR --data FILE.tsv [FILE.tsv ...] --out DIR [--max-new-tokens N] [--limit N] [--lang L]
/// [--protocol P] [--vision DIR]`: runs a Parrot model over VLMEvalKit benchmark TSVs (MMMB, multilingual MMBench)
/// with the paper's prompt, greedy decoding and rule-based answer extraction, and writes OUT/predictions.tsv,
/// OUT/summary.json and OUT/summary.md; answers are journaled in OUT/predictions.partial.jsonl so a killed run
/// resumes (a finished run deletes it). `parrot eval --score PREDICTIONS.tsv --out DIR` re-scores an existing predictions file without a model.
/// </summary>
internal static class EvalCommand
{
    /// <summary>The journal of answers given so far, in the output folder.</summary>
    public const string JournalName = "predictions.partial.jsonl";

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Parrot model directory (config.json, safetensors, tokenizer.json; the vision tower from mm_vision_tower or --vision)" };
        var data = new Option<string[]>("--data") { Description = "Benchmark TSV files (VLMEvalKit format); the language comes from the name (_en, _cn/_zh, _pt, _ar, _tr, _ru) or --lang", AllowMultipleArgumentsPerToken = true };
        var outDir = new Option<string>("--out") { Description = "Output folder: predictions.tsv, summary.json, summary.md (and the partial results of a run)", Required = true };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Most tokens generated per answer; each question's prompt and these must fit the model's context (max_position_embeddings); every question is checked before any answer is generated, and a run with questions that do not fit is refused, naming them, before it writes anything", DefaultValueFactory = _ => 512 };
        var limit = new Option<int?>("--limit") { Description = "Evaluate only the first N scored units (questions, circular groups or groups) of each file" };
        var lang = new Option<string?>("--lang") { Description = "Language of every input (en, zh or cn, pt, ar, tr, ru), instead of the file names'" };
        var protocol = new Option<string?>("--protocol") { Description = "Scoring protocol for every input: vanilla, circular or grouped (default: circular for names containing 'mmbench', grouped with a 'group' column, else vanilla)" };
        var score = new Option<string?>("--score") { Description = "Re-score this predictions TSV (benchmark columns plus 'prediction') without a model" };
        var vision = new Option<string?>("--vision") { Description = "CLIP vision tower directory (default: the model config's mm_vision_tower, relative to --model)" };
        var cmd = new Command("eval", "Evaluate a Parrot model on MMMB / multilingual MMBench TSVs, or re-score a predictions file");
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        foreach (var o in new Option[] { device, dtype, model, data, outDir, maxNew, limit, lang, protocol, score, vision }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("eval", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "eval");
            string output = p.GetValue(outDir)!;
            ScoringProtocol? proto = p.GetValue(protocol) is { } name ? ParseProtocol(name) : null;
            string? language = p.GetValue(lang);
            if (language is not null && BenchmarkLanguages.Normalize(language) is null)
                throw new CliException($"--lang: unknown language '{language}' (known: en, zh or cn, pt, ar, tr, ru)");
            var files = p.GetValue(data) ?? [];

            if (p.GetValue(score) is { } predictions)
            {
                if (p.GetValue(model) is not null || files.Length > 0) throw new CliException("--score re-scores a predictions file: give it without --model and --data");
                // The flags of answering with a model were accepted and ignored here: a re-score "in bf16" or "with 16
                // new tokens" looked like it had done something.
                foreach (var o in new Option[] { device, dtype, maxNew, limit, vision })
                    if (p.GetResult(o) is { Implicit: false })
                        throw new CliException($"--score re-scores a predictions file: {o.Name} applies only when a model answers (--model, --data)");
                if (!File.Exists(predictions)) throw new CliException($"--score: {predictions}: no such file");
                var table = TsvTable.Read(predictions, skipMalformedRows: true);
                var scored = Evaluator.ScorePredictions(table, Path.GetFileName(predictions), language, proto);
                ReportProblems(scored);
                foreach (var r in scored) RequireQuestions(r.File.Name, r.Rows.Count, r.Problems.Count);
                Finish(output, scored);
                return 0;
            }

            string modelDir = p.GetValue(model) ?? throw new CliException("give --model DIR and --data FILE.tsv ... (or --score PREDICTIONS.tsv)");
            if (files.Length == 0) throw new CliException("--data: give at least one benchmark TSV file");
            int maxNewTokens = p.GetValue(maxNew);
            if (maxNewTokens < 1) throw new CliException($"--max-new-tokens must be ≥ 1, got {maxNewTokens}");
            int? lim = p.GetValue(limit);
            if (lim is < 1) throw new CliException($"--limit must be ≥ 1, got {lim}");
            var benchmarks = new List<BenchmarkFile>();
            foreach (var f in files)
            {
                if (!File.Exists(f)) throw new CliException($"--data: {f}: no such file");
                benchmarks.Add(BenchmarkFile.Load(f, language));
            }
            var twice = benchmarks.GroupBy(b => b.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (twice is not null) throw new CliException($"--data: two files are named {twice.Key}; datasets are told apart by file name");
            foreach (var b in benchmarks) PrintProblems(b.Name, b.Problems);
            foreach (var b in benchmarks) RequireQuestions(b.Name, b.Rows.Count, b.Problems.Count);

            string? visionDir = p.GetValue(vision);
            var type = DTypeOption.Resolve(p.GetValue(dtype));
            var run = RunKey(modelDir, visionDir, maxNewTokens, language, type, benchmarks.Select((b, i) => (b.Name, files[i])));
            var options = new EvaluationOptions { MaxNewTokens = maxNewTokens, Limit = lim, Protocol = proto };
            var results = Evaluate(benchmarks, () =>
            {
                var generator = ParrotAnswerGenerator.Load(modelDir, visionDir, captureRouting: false, dev, type);
                if (!generator.HasVisionTower && benchmarks.Any(b => b.Rows.Any(r => r.Image is not null)))
                {
                    generator.Dispose();
                    throw new CliException($"{modelDir}: the model has no vision tower (a text-only Qwen2 model, or config.json's mm_vision_tower names no directory here) and the questions have images: give the CLIP tower with --vision DIR");
                }
                return generator;
            }, options, output, run, new ProgressView().Report);
            Finish(output, results);
            // The outputs are written (atomically): the answers are no partial results any more. A journal left behind
            // refused the next run into this folder with other settings as "another run", though nothing was partial.
            File.Delete(Path.Combine(output, JournalName));
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// What a run's answers depend on, recorded in its journal's first line; <see cref="PredictionJournal.Open"/> refuses a
    /// journal whose record differs in any of them. Besides the paths and settings (model, vision, max_new_tokens, lang, dtype), the
    /// inputs themselves: each data file's bytes (<c>data:NAME</c>, a SHA-256) and the files of the model folder and of the
    /// tower folder (<c>model_files</c>, <c>vision_files</c>: <see cref="FolderFingerprint"/>). With the paths alone, a
    /// benchmark file of the same name with other questions, or another checkpoint saved into the same folder, resumed from
    /// the journal: the old run's answers were paired with the new questions and scored.
    /// </summary>
    internal static Dictionary<string, string> RunKey(string modelDir, string? visionDir, int maxNewTokens, string? language, DType dtype,
        IEnumerable<(string Name, string Path)> data)
    {
        var run = new Dictionary<string, string>
        {
            ["model"] = Path.GetFullPath(modelDir),
            ["vision"] = visionDir is null ? "" : Path.GetFullPath(visionDir),
            ["max_new_tokens"] = maxNewTokens.ToString(CultureInfo.InvariantCulture),
            ["lang"] = language is null ? "" : BenchmarkLanguages.Normalize(language)!,
            // bf16 answers are another model's answers as far as a resume goes: mixing them with float32 ones would score neither.
            ["dtype"] = DTypeOption.Name(dtype),
        };
        foreach (var (name, path) in data)
        {
            using var file = File.OpenRead(path);
            run[$"data:{name}"] = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(file));
        }
        run["model_files"] = FolderFingerprint(modelDir);
        run["vision_files"] = TowerFolder(modelDir, visionDir) is { } tower ? FolderFingerprint(tower) : "";
        return run;
    }

    /// <summary>
    /// The files a model folder's answers come from — the top level's <c>*.safetensors</c> and <c>*.json</c> (weights, shard
    /// index, config, tokenizer) — as "N files, B bytes, DIGEST", the digest (16 hex digits of a SHA-256) over each one's
    /// name, size and last-write time. Cheap: no weights are read, which for a 7B checkpoint would be gigabytes. Another
    /// checkpoint saved into the folder is written anew, so its times differ (and mostly its sizes); a copy of the same
    /// checkpoint may differ as well and is then refused, the safe side. "none" for a folder that does not exist (loading the
    /// model then says why).
    /// </summary>
    internal static string FolderFingerprint(string dir)
    {
        if (!Directory.Exists(dir)) return "none";
        var files = new DirectoryInfo(dir).EnumerateFiles()
            .Where(f => f.Name.EndsWith(".safetensors", StringComparison.Ordinal) || f.Name.EndsWith(".json", StringComparison.Ordinal))
            .OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
        var text = new System.Text.StringBuilder();
        foreach (var f in files)
            text.Append(CultureInfo.InvariantCulture, $"{f.Name}\t{f.Length}\t{f.LastWriteTimeUtc.Ticks}\n");
        string digest = Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text.ToString())))[..16];
        return string.Create(CultureInfo.InvariantCulture, $"{files.Count} files, {files.Sum(f => f.Length)} bytes, {digest}");
    }

    /// <summary>
    /// The tower folder a run loads: --vision, else config.json's mm_vision_tower (relative to the model folder, or absolute);
    /// null when there is none to read (loading the model then says why, or the tower is in the checkpoint).
    /// </summary>
    private static string? TowerFolder(string modelDir, string? visionDir)
    {
        if (visionDir is not null) return visionDir;
        try
        {
            return global::Parrot.Parrot.Model.ParrotConfig.Load(Path.Combine(modelDir, "config.json")).VisionTowerFolder(modelDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or System.Text.Json.JsonException
                                  or ArgumentException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// A model run after its arguments are checked: <paramref name="load"/> gives the model (disposed here when it is
    /// <see cref="IDisposable"/>), then every question's length is checked against its context, and only then are the output
    /// folder and a new journal made and the questions asked. A refused run writes nothing (before, a question that did not
    /// fit stopped the run when it was reached, with the answers before it generated and journaled). The journal of a run
    /// being resumed is opened first (opening a started one adds nothing; it only cuts a torn last line, as any reopening
    /// does; one not started, <see cref="PredictionJournal.IsStarted"/>, is left for after the check) and the check is given
    /// it: its answers are not generated again, so, as in Evaluator.Run, they are not checked (checked without it, a
    /// resumed run was refused for questions it would not ask). The check runs once: Evaluator.Run
    /// is told it ran (it used to check again, tokenizing every question's prompt a second time); a journal made new after
    /// it answers nothing, so the run asks exactly the questions checked.
    /// </summary>
    /// <exception cref="ArgumentException">Questions do not fit: the message names the limit --max-new-tokens.</exception>
    internal static List<DatasetResult> Evaluate(IReadOnlyList<BenchmarkFile> benchmarks, Func<IAnswerGenerator> load, EvaluationOptions options,
        string output, IReadOnlyDictionary<string, string> run, Action<EvaluationProgress>? progress)
    {
        var journalPath = Path.Combine(output, JournalName);
        // Only a started journal is opened before the check: opening one that is not (empty, as a run killed before its first
        // answer leaves it) writes this run's header into it, so a refused run marked the folder as its own and the run
        // the refusal asks for (a lower --max-new-tokens) was then refused as "another run". Not started, it answers nothing.
        PredictionJournal? journal = PredictionJournal.IsStarted(journalPath) ? PredictionJournal.Open(journalPath, run) : null;
        try
        {
            var generator = load();
            try
            {
                try { Evaluator.CheckContext(benchmarks, generator, options, journal); }
                catch (QuestionsTooLongException e) { throw new ArgumentException(e.Describe("--max-new-tokens"), e); } // the option's name in the hint

                Directory.CreateDirectory(output);
                journal ??= PredictionJournal.Open(journalPath, run);
                if (journal.Recovered > 0) Console.WriteLine($"resuming: {journal.Recovered} answers from {journal.Path}");
                return Evaluator.Run(benchmarks, generator, options, journal, progress, contextChecked: true);
            }
            finally { (generator as IDisposable)?.Dispose(); }
        }
        finally { journal?.Dispose(); }
    }

    private static ScoringProtocol ParseProtocol(string name)
    {
        try { return Scoring.Parse(name); }
        catch (ArgumentException e) { throw new CliException("--protocol: " + e.Message); }
    }

    private static void ReportProblems(IEnumerable<DatasetResult> results)
    {
        foreach (var r in results) PrintProblems(r.File.Name, r.Problems);
    }

    /// <summary>
    /// A dataset without one usable question is an error: scoring it wrote "0.00% of 0 units" with exit code 0,
    /// an accuracy of 0 for a file of the wrong layout (every row skipped) or with no data rows.
    /// </summary>
    private static void RequireQuestions(string dataset, int questions, int skipped)
    {
        if (questions > 0) return;
        throw new InvalidDataException(skipped > 0
            ? $"{dataset}: no usable question: all {skipped} data rows were skipped (reasons above)"
            : $"{dataset}: no questions (the table has a header but no data rows)");
    }

    /// <summary>The most skipped rows printed per dataset; summary.md lists them all.</summary>
    private const int ProblemsPrinted = 20;

    private static void PrintProblems(string dataset, IReadOnlyList<SkippedRow> problems)
    {
        foreach (var problem in problems.Take(ProblemsPrinted)) Console.Error.WriteLine($"{dataset}: {problem} — skipped");
        if (problems.Count > ProblemsPrinted)
            Console.Error.WriteLine($"{dataset}: … and {problems.Count - ProblemsPrinted} more rows skipped (all are listed in summary.md)");
    }

    private static void Finish(string output, IReadOnlyList<DatasetResult> results)
    {
        EvaluationReport.Write(output, results);
        var inv = CultureInfo.InvariantCulture;
        foreach (var r in results)
        {
            Console.WriteLine(string.Create(inv, $"{r.File.Name} ({r.File.Language}, {Scoring.Name(r.Protocol)}): {100 * r.Score.Overall:F2}% of {r.Score.Count} units; "
                + $"{r.Unmatched.Count} of {r.Rows.Count} answers unmatched; {r.Problems.Count} rows skipped; language fidelity {r.Fidelity}"));
            foreach (var u in r.Unmatched.Take(3))
                Console.WriteLine($"  unmatched, index {u.Row.IndexText}: {Shorten(u.Prediction)}");
        }
        Console.WriteLine($"wrote {Path.Combine(output, "predictions.tsv")}, summary.json and summary.md");
    }

    private static string Shorten(string s)
    {
        s = s.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\t", "\\t", StringComparison.Ordinal);
        return s.Length <= 100 ? $"\"{s}\"" : $"\"{s[..100]}…\"";
    }

    /// <summary>A progress bar on a terminal; plain lines (every 10 s and at the end of each file) otherwise.</summary>
    private sealed class ProgressView
    {
        private readonly bool _terminal = !Console.IsErrorRedirected;
        private readonly Stopwatch _clock = new();
        private TimeSpan _lastLine;
        private int _problems;

        public void Report(EvaluationProgress p)
        {
            if (p.Problem is not null && ++_problems <= ProblemsPrinted)
            {
                if (_terminal) Console.Error.WriteLine();
                Console.Error.WriteLine($"{p.Dataset}: {p.Problem} — skipped");
            }
            if (p.Done == 0)
            {
                _clock.Restart();
                _lastLine = TimeSpan.Zero;
                _problems = 0;
                Console.Error.WriteLine($"{p.Dataset}: {p.Total} questions");
                return;
            }
            int generated = p.Done - p.Recovered;
            double rate = generated > 0 ? generated / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9) : 0;
            string eta = rate > 0 ? TimeSpan.FromSeconds(Math.Round((p.Total - p.Done) / rate)).ToString("g", CultureInfo.InvariantCulture) : "?";
            string text = string.Create(CultureInfo.InvariantCulture, $"{p.Done}/{p.Total} ({p.Recovered} resumed) {rate:F2} q/s ETA {eta}");
            bool last = p.Done == p.Total;
            if (_terminal)
            {
                const int width = 30;
                int filled = (int)((long)width * p.Done / Math.Max(p.Total, 1));
                Console.Error.Write($"\r{p.Dataset} [{new string('#', filled)}{new string('.', width - filled)}] {text}   ");
                if (last) Console.Error.WriteLine();
            }
            else if (last || _clock.Elapsed - _lastLine >= TimeSpan.FromSeconds(10))
            {
                _lastLine = _clock.Elapsed;
                Console.Error.WriteLine($"{p.Dataset}: {text}");
            }
        }
    }
}
