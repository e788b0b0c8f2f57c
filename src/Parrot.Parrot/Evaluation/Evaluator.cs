using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Evaluation;

/// <summary>A question with the model's answer.</summary>
/// <param name="Row">The question.</param>
/// <param name="Prediction">The raw generated text.</param>
/// <param name="Extracted">The option letter extracted from it (<see cref="MultipleChoiceQuestion.Extract"/>: Parrot's cleanup, then the matching rules), or <see cref="AnswerExtraction.None"/> ('Z').</param>
/// <param name="Hit">Whether <paramref name="Extracted"/> is the right letter.</param>
public sealed record PredictedRow(BenchmarkRow Row, string Prediction, char Extracted, bool Hit);

/// <summary>One dataset's answers and scores.</summary>
public sealed class DatasetResult
{
    /// <summary>The dataset.</summary>
    public BenchmarkFile File { get; }
    /// <summary>The protocol it was scored with.</summary>
    public ScoringProtocol Protocol { get; }
    /// <summary>The answered questions, in file order.</summary>
    public IReadOnlyList<PredictedRow> Rows { get; }
    /// <summary>Accuracy overall, per category and per l2-category.</summary>
    public ScoreReport Score { get; }
    /// <summary>The language-fidelity count of the answers.</summary>
    public LanguageFidelity Fidelity { get; }
    /// <summary>Rows left out: unreadable in the file, or whose image could not be decoded.</summary>
    public IReadOnlyList<SkippedRow> Problems { get; }
    /// <summary>Answers no option could be extracted from ('Z').</summary>
    public IReadOnlyList<PredictedRow> Unmatched { get; }

    private DatasetResult(BenchmarkFile file, ScoringProtocol protocol, List<PredictedRow> rows, List<SkippedRow> problems)
    {
        File = file; Protocol = protocol; Rows = rows; Problems = problems;
        Score = Scoring.Score(rows.Select(r => new ScoredItem(r.Row.Index, r.Row.Group, r.Row.Category, r.Hit, r.Row.L2Category)), protocol);
        Fidelity = LanguageFidelity.Of(rows.Select(r => (r.Prediction, r.Row.Question.Options.Select(o => o.Letter), r.Row.Question.Language)));
        Unmatched = rows.Where(r => r.Extracted == AnswerExtraction.None).ToList();
    }

    /// <summary>Extracts and scores <paramref name="answers"/> (rows of <paramref name="file"/> with their generated text).</summary>
    public static DatasetResult Create(BenchmarkFile file, ScoringProtocol protocol, IEnumerable<(BenchmarkRow Row, string Prediction)> answers, IEnumerable<SkippedRow>? moreProblems = null)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(answers);
        var rows = answers.Select(a =>
        {
            char x = a.Row.Question.Extract(a.Prediction);
            return new PredictedRow(a.Row, a.Prediction, x, x == a.Row.Answer);
        }).ToList();
        var problems = file.Problems.Concat(moreProblems ?? []).OrderBy(p => p.Row).ToList();
        return new DatasetResult(file, protocol, rows, problems);
    }
}

/// <summary>Settings of an evaluation run.</summary>
public sealed record EvaluationOptions
{
    /// <summary>The most tokens generated per answer (PARROT.md: 512).</summary>
    public int MaxNewTokens { get; init; } = 512;
    /// <summary>Evaluate only the first N scored units (questions, circular groups or groups) of each file; null: all.</summary>
    public int? Limit { get; init; }
    /// <summary>The protocol for every file; null: each file's own (<see cref="BenchmarkFile.DefaultProtocol"/>).</summary>
    public ScoringProtocol? Protocol { get; init; }
    /// <summary>
    /// Questions asked at once of an <see cref="IBatchAnswerGenerator"/> (greedy answers are the same as one by
    /// one; a killed run loses at most one batch). 1 asks one at a time; other generators are always asked one at a time.
    /// </summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>
    /// An ablation, not a benchmark result: question k of the n evaluated in each file is shown the image of
    /// question (k + n/2) mod n instead of its own. A model that reads the image falls towards chance; one that
    /// answers from the text alone keeps its score. Not allowed with a journal (its answers are keyed by question).
    /// </summary>
    public bool SwapImages { get; init; }
}

/// <summary>Where a run is: reported after each question (and once when a file starts).</summary>
/// <param name="Dataset">The file being evaluated.</param>
/// <param name="Done">Questions of the file answered so far (recovered ones included).</param>
/// <param name="Total">Questions of the file to answer.</param>
/// <param name="Recovered">Of <paramref name="Done"/>, answers taken from the partial results of an earlier run.</param>
/// <param name="Problem">A row left out just now (its image could not be decoded), or null.</param>
public sealed record EvaluationProgress(string Dataset, int Done, int Total, int Recovered, SkippedRow? Problem = null);

/// <summary>
/// The benchmark harness (PARROT.md "Benchmarks"): each question's prompt goes to the model, the answer's
/// option is extracted by rule, and each file is scored with its protocol.
/// </summary>
public static class Evaluator
{
    /// <summary>
    /// Asks <paramref name="generator"/> every question of <paramref name="files"/> (in file order; one at a
    /// time, or in batches of <see cref="EvaluationOptions.BatchSize"/> for an <see cref="IBatchAnswerGenerator"/>)
    /// and scores the answers. With a <paramref name="journal"/>, answers it already holds are reused and new
    /// ones recorded as they come, so a killed run resumes where it stopped. A row whose image is not valid
    /// base64 or cannot be decoded is reported and left out. Before any answer, every question is checked against the
    /// generator's context (<see cref="CheckContext"/>) unless <paramref name="contextChecked"/> says the caller has done so.
    /// </summary>
    /// <param name="files">The benchmark files, told apart by name.</param>
    /// <param name="generator">The model.</param>
    /// <param name="options">The run's settings (null: the defaults).</param>
    /// <param name="journal">Answers of an earlier run to reuse, and where new ones are recorded; null: none.</param>
    /// <param name="progress">Hears where the run is.</param>
    /// <param name="contextChecked">
    /// The caller has just run <see cref="CheckContext"/> for these files, generator and options, with this journal or, for a
    /// journal it opened new after the check, none (a new journal answers nothing, so the same questions were checked). The
    /// check tokenizes every question's prompt; the CLI checks before it writes anything (a refused run leaves no output
    /// folder or journal), and Run checking again tokenized every question a second time.
    /// </param>
    public static List<DatasetResult> Run(IReadOnlyList<BenchmarkFile> files, IAnswerGenerator generator, EvaluationOptions? options = null,
        PredictionJournal? journal = null, Action<EvaluationProgress>? progress = null, bool contextChecked = false)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(generator);
        options ??= new EvaluationOptions();
        if (options.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "max new tokens must be ≥ 0");
        var duplicate = files.GroupBy(f => f.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two input files are named {duplicate.Key}: datasets are told apart by file name");
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), "the batch size must be ≥ 1");
        if (options.SwapImages && journal is not null) throw new ArgumentException("an image-swap ablation cannot use a journal: its answers are not the questions' answers");
        if (!contextChecked) CheckContext(files, generator, options, journal);
        var batch = generator as IBatchAnswerGenerator;
        int batchSize = batch is null ? 1 : options.BatchSize;
        var results = new List<DatasetResult>(files.Count);
        foreach (var file in files)
        {
            var protocol = options.Protocol ?? file.DefaultProtocol;
            var rows = options.Limit is int limit ? file.FirstUnits(limit, protocol) : file.Rows;
            var answers = new (BenchmarkRow Row, string Text)?[rows.Count];
            var problems = new List<SkippedRow>();
            int recovered = 0, done = 0;
            progress?.Invoke(new EvaluationProgress(file.Name, 0, rows.Count, 0));
            var pending = new List<(int K, AnswerRequest Request)>();
            void Report(SkippedRow? problem) => progress?.Invoke(new EvaluationProgress(file.Name, ++done, rows.Count, recovered, problem));
            void Record(int k, string text)
            {
                journal?.Append(file.Name, rows[k].IndexText, text);
                answers[k] = (rows[k], text);
            }
            // Asks the pending questions (a batch when the generator takes batches), in order.
            void Flush()
            {
                if (pending.Count == 0) return;
                if (pending.Count > 1 && batch is not null)
                {
                    IReadOnlyList<string>? texts = null;
                    try { texts = batch.Answer(pending.Select(p => p.Request).ToList()); }
                    catch (ImageLoadException) { } // find the bad image: one by one below
                    if (texts is not null)
                    {
                        if (texts.Count != pending.Count) throw new InvalidOperationException($"the generator gave {texts.Count} answers to {pending.Count} questions");
                        for (int i = 0; i < pending.Count; i++)
                        {
                            Record(pending[i].K, texts[i]);
                            Report(null);
                        }
                        pending.Clear();
                        return;
                    }
                }
                foreach (var (k, request) in pending)
                {
                    SkippedRow? problem = null;
                    try { Record(k, generator.Answer(request)); }
                    catch (ImageLoadException e) { problem = new SkippedRow(rows[k].Row, rows[k].IndexText, $"the image cannot be decoded: {e.Message}"); }
                    if (problem is not null) problems.Add(problem);
                    Report(problem);
                }
                pending.Clear();
            }
            for (int k = 0; k < rows.Count; k++)
            {
                var row = rows[k];
                if (journal is not null && journal.TryGet(file.Name, row.IndexText, out var known))
                {
                    Flush();
                    answers[k] = (row, known);
                    recovered++;
                    Report(null);
                    continue;
                }
                byte[]? image = null;
                var base64 = options.SwapImages ? rows[(k + rows.Count / 2) % rows.Count].Image : row.Image;
                if (base64 is not null)
                {
                    image = Base64(base64);
                    if (image is null)
                    {
                        Flush();
                        var problem = new SkippedRow(row.Row, row.IndexText, "the image is not valid base64");
                        problems.Add(problem);
                        Report(problem);
                        continue;
                    }
                }
                pending.Add((k, new AnswerRequest(image, row.Question.Prompt(), file.Language, options.MaxNewTokens)));
                if (pending.Count >= batchSize) Flush();
            }
            Flush();
            results.Add(DatasetResult.Create(file, protocol, answers.Where(a => a is not null).Select(a => a!.Value), problems));
        }
        return results;
    }

    /// <summary>
    /// Checks, before any answer is generated, that every question <see cref="Run"/> would ask (the same rows: the limit,
    /// the swapped images; none the <paramref name="journal"/> already answers) fits <paramref name="generator"/>'s context
    /// with <see cref="EvaluationOptions.MaxNewTokens"/> new tokens, as generation checks it (<see cref="Inference.ContextWindow"/>).
    /// A question that did not fit used to stop the run when it was reached, after everything before it had been generated.
    /// Only prompts are tokenized: a question with an image counts the model's visual tokens. A row whose image is not valid
    /// base64 is left out, as the run leaves it out (reported, never asked): counted as a question with an image, it refused
    /// a run that would have skipped it. So is a row whose image is base64 but not a picture the generator takes
    /// (<see cref="IContextAwareGenerator.TakesImage"/> false: its Answer refuses the image before generating, and the run
    /// reports and skips the row; it is never asked text-only). That is asked only of questions that do not fit otherwise:
    /// a question that fits cannot refuse the run whatever its image holds, so images are looked at only where the verdict
    /// depends on them (usually none).
    /// Generators that cannot tell lengths (not an <see cref="IContextAwareGenerator"/>), and questions whose length they
    /// cannot tell, are left to generation's own check.
    /// </summary>
    /// <exception cref="QuestionsTooLongException">Some questions do not fit: all of them are counted, the first few named.</exception>
    public static void CheckContext(IReadOnlyList<BenchmarkFile> files, IAnswerGenerator generator, EvaluationOptions? options = null, PredictionJournal? journal = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(generator);
        options ??= new EvaluationOptions();
        // With no new tokens nothing runs, so no prompt was ever refused (ContextWindow.Room: the answer must have room).
        if (generator is not IContextAwareGenerator lengths || options.MaxNewTokens <= 0) return;
        int context = lengths.ContextLength, maxNew = options.MaxNewTokens;
        var tooLong = new List<(string Dataset, string Index, int PromptLength)>();
        foreach (var file in files)
        {
            var rows = options.Limit is int limit ? file.FirstUnits(limit, options.Protocol ?? file.DefaultProtocol) : file.Rows;
            for (int k = 0; k < rows.Count; k++)
            {
                var row = rows[k];
                if (journal is not null && journal.TryGet(file.Name, row.IndexText, out _)) continue;
                var base64 = options.SwapImages ? rows[(k + rows.Count / 2) % rows.Count].Image : row.Image;
                if (base64 is not null && !IsBase64(base64)) continue; // Run skips it: never asked
                if (lengths.PromptLength(row.Question.Prompt(), base64 is not null) is int length && (long)length + maxNew > context)
                {
                    if (base64 is not null && !lengths.TakesImage(Base64(base64)!)) continue; // Run skips it too: never asked
                    tooLong.Add((file.Name, row.IndexText, length));
                }
            }
        }
        if (tooLong.Count > 0) throw new QuestionsTooLongException(tooLong, context, maxNew);
    }

    /// <summary>
    /// Scores an existing predictions table (a benchmark's columns plus <c>prediction</c>, as VLMEvalKit and
    /// <c>parrot eval</c> write them) without a model. Rows are split into datasets by a <c>dataset</c> column
    /// when there is one, else the whole table is the dataset <paramref name="name"/>; each dataset's language
    /// is <paramref name="language"/> when given, else its name's, else its <c>lang</c> column's; its protocol
    /// <paramref name="protocol"/> when given, else its own.
    /// </summary>
    public static List<DatasetResult> ScorePredictions(TsvTable table, string name, string? language = null, ScoringProtocol? protocol = null)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (table.IndexOf("prediction") < 0) throw new InvalidDataException($"{name}: no 'prediction' column (columns: {string.Join(", ", table.Columns)})");
        int iDataset = table.IndexOf("dataset");
        if (iDataset < 0)
        {
            var whole = BenchmarkFile.FromTable(table, name, language, requireImages: false, source: name);
            return [DatasetResult.Create(whole, protocol ?? whole.DefaultProtocol, whole.Rows.Select(r => (r, r.Prediction ?? "")))];
        }
        var numbers = BenchmarkFile.RowNumbers(table);
        var results = new List<DatasetResult>();
        foreach (var g in Enumerable.Range(0, table.Rows.Count).GroupBy(k => table.Rows[k][iDataset].Length > 0 ? table.Rows[k][iDataset] : name, StringComparer.Ordinal))
        {
            var part = new TsvTable(table.Columns, g.Select(k => table.Rows[k]));
            var file = BenchmarkFile.FromTable(part, g.Key, language, false, $"{name} (dataset {g.Key})", g.Select(k => numbers[k]).ToArray());
            // Rows the table parser left out have no dataset to go to: they are reported with the first.
            results.Add(DatasetResult.Create(file, protocol ?? file.DefaultProtocol, file.Rows.Select(r => (r, r.Prediction ?? "")),
                results.Count == 0 ? table.Skipped : null));
        }
        return results;
    }

    private static byte[]? Base64(string s)
    {
        var buffer = new byte[s.Length * 3 / 4 + 3];
        return Convert.TryFromBase64String(s, buffer, out int n) ? buffer[..n] : null;
    }

    /// <summary>Whether <see cref="Base64"/> decodes <paramref name="s"/> (the same test, into a rented buffer: nothing kept).</summary>
    private static bool IsBase64(string s)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(s.Length * 3 / 4 + 3);
        try { return Convert.TryFromBase64String(s, buffer, out _); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(buffer); }
    }
}
