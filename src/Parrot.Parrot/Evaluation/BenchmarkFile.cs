using System.Globalization;

namespace Parrot.Parrot.Evaluation;

/// <summary>One readable question of a benchmark file.</summary>
/// <param name="Row">1-based position among the file's data rows.</param>
/// <param name="IndexText">The <c>index</c> field as written.</param>
/// <param name="Index">The index as a number.</param>
/// <param name="Question">Question, hint, options and language (builds the prompt, extracts answers).</param>
/// <param name="Answer">The right option letter.</param>
/// <param name="Category">The <c>category</c> field ("" when absent).</param>
/// <param name="L2Category">The <c>l2-category</c> field ("" when absent).</param>
/// <param name="Group">The <c>group</c> field, or null when the file has no such column or the field is empty.</param>
/// <param name="Image">The image as base64, references to other rows resolved (null when the file has no image column).</param>
/// <param name="Prediction">The <c>prediction</c> field of a predictions file (null when there is none).</param>
/// <param name="Fields">Every field of the row, in the order of <see cref="BenchmarkFile.Columns"/>.</param>
public sealed record BenchmarkRow(int Row, string IndexText, long Index, MultipleChoiceQuestion Question, char Answer,
    string Category, string L2Category, string? Group, string? Image, string? Prediction, IReadOnlyList<string> Fields);

/// <summary>
/// A VLMEvalKit multiple-choice TSV (MMMB, multilingual MMBench; PARROT.md "Benchmarks"): <c>index</c>,
/// <c>image</c> (base64, or — 64 characters or fewer — the index of the row whose image it reuses),
/// <c>question</c>, optional <c>hint</c>, options in single-letter columns <c>A</c>, <c>B</c>, … (a missing
/// value means the option is absent), <c>answer</c> (a letter), optional <c>category</c>, <c>l2-category</c>,
/// <c>split</c> and <c>group</c>. As pandas reads these files, an empty field and pandas' NA markers
/// (<c>nan</c>, <c>NaN</c>, <c>None</c>, <c>NA</c>, <c>null</c>, …) are missing values. A row that cannot be
/// used is listed in <see cref="Problems"/> with its position and index and left out; a file without the
/// required columns or whose language is unknown is an error.
/// </summary>
public sealed class BenchmarkFile
{
    /// <summary>The longest image field that is read as a reference to another row's image (VLMEvalKit's rule).</summary>
    public const int MaxImageReferenceLength = 64;

    /// <summary>pandas' default NA markers (read_csv), which VLMEvalKit's loader therefore treats as missing.</summary>
    private static readonly HashSet<string> NaMarkers = new(StringComparer.Ordinal)
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
        "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    };

    /// <summary>The dataset's name: the input file's name (e.g. <c>mmmb_en.tsv</c>).</summary>
    public string Name { get; }
    /// <summary>The benchmark language code (en, zh, pt, ar, tr, ru).</summary>
    public string Language { get; }
    /// <summary>The file's columns.</summary>
    public IReadOnlyList<string> Columns { get; }
    /// <summary>Whether the file has a <c>group</c> column.</summary>
    public bool HasGroupColumn { get; }
    /// <summary>The usable rows, in file order.</summary>
    public IReadOnlyList<BenchmarkRow> Rows { get; }
    /// <summary>The rows left out, with why.</summary>
    public IReadOnlyList<SkippedRow> Problems { get; }

    private BenchmarkFile(string name, string language, IReadOnlyList<string> columns, bool hasGroup, List<BenchmarkRow> rows, List<SkippedRow> problems)
    {
        Name = name; Language = language; Columns = columns; HasGroupColumn = hasGroup; Rows = rows; Problems = problems;
    }

    /// <summary>The protocol its name and columns call for (<see cref="Scoring.ProtocolFor"/>).</summary>
    public ScoringProtocol DefaultProtocol => Scoring.ProtocolFor(Name, HasGroupColumn);

    /// <summary>
    /// Reads a benchmark TSV. The language is <paramref name="language"/> when given, else the file name's
    /// (<see cref="BenchmarkLanguages.FromFileName"/>). <paramref name="requireImages"/>: the file must have
    /// an <c>image</c> column (to run a model; scoring predictions needs none).
    /// </summary>
    public static BenchmarkFile Load(string path, string? language = null, bool requireImages = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        var table = TsvTable.Read(path, skipMalformedRows: true);
        return FromTable(table, Path.GetFileName(path), language, requireImages, path);
    }

    /// <summary>
    /// The benchmark in <paramref name="table"/>, named <paramref name="name"/>; <paramref name="source"/>
    /// names it in errors. The language is <paramref name="language"/> when given, else <paramref name="name"/>'s,
    /// else that of a <c>lang</c> column (as predictions files have).
    /// </summary>
    public static BenchmarkFile FromTable(TsvTable table, string name, string? language = null, bool requireImages = true, string? source = null) =>
        FromTable(table, name, language, requireImages, source, null);

    /// <summary><see cref="FromTable(TsvTable, string, string?, bool, string?)"/> with the rows' numbers in a larger file.</summary>
    internal static BenchmarkFile FromTable(TsvTable table, string name, string? language, bool requireImages, string? source, IReadOnlyList<int>? rowNumbers)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(name);
        source ??= name;
        int iIndex = Required(table, "index", source), iQuestion = Required(table, "question", source), iAnswer = Required(table, "answer", source);
        int iImage = table.IndexOf("image");
        if (requireImages && iImage < 0) throw new InvalidDataException($"{source}: no 'image' column (columns: {string.Join(", ", table.Columns)})");
        int iHint = table.IndexOf("hint"), iCategory = table.IndexOf("category"), iL2 = table.IndexOf("l2-category");
        int iGroup = table.IndexOf("group"), iPrediction = table.IndexOf("prediction"), iLang = table.IndexOf("lang");
        var optionColumns = table.Columns.Select((c, i) => (Column: c, Position: i))
            .Where(c => c.Column.Length == 1 && c.Column[0] is >= 'A' and <= 'Z')
            .OrderBy(c => c.Column[0]).ToList();
        if (optionColumns.Count < 2) throw new InvalidDataException($"{source}: fewer than two option columns (A, B, …); columns: {string.Join(", ", table.Columns)}");

        string? lang = language is null ? null : BenchmarkLanguages.Normalize(language)
            ?? throw new ArgumentException($"unknown language '{language}' (known: en, zh or cn, pt, ar, tr, ru)");
        lang ??= BenchmarkLanguages.FromFileName(name);
        if (lang is null && iLang >= 0)
            lang = table.Rows.Select(r => BenchmarkLanguages.Normalize(r[iLang])).FirstOrDefault(l => l is not null);
        if (lang is null)
            throw new InvalidDataException($"{source}: cannot tell the language from the name '{name}' (…_en, _cn or _zh, _pt, _ar, _tr, _ru): give it with --lang");

        var problems = new List<SkippedRow>(table.Skipped);
        // Images by index, for references: only rows with a real (long) image can be referred to.
        var imageOf = new Dictionary<string, string>(StringComparer.Ordinal);
        if (iImage >= 0)
            foreach (var r in table.Rows)
                if (r[iImage].Length > MaxImageReferenceLength && TryIndex(r[iIndex], out var ix))
                    imageOf.TryAdd(ix.ToString(CultureInfo.InvariantCulture), r[iImage]);

        var rows = new List<BenchmarkRow>(table.Rows.Count);
        var seen = new HashSet<long>();
        rowNumbers ??= RowNumbers(table);
        for (int k = 0; k < table.Rows.Count; k++)
        {
            var f = table.Rows[k];
            int rowNumber = rowNumbers[k];
            string indexText = f[iIndex].Trim();
            string? Problem()
            {
                if (!TryIndex(indexText, out _)) return $"the index '{Shorten(indexText)}' is not an integer";
                if (Missing(f[iQuestion])) return "no question";
                return null;
            }
            var problem = Problem();
            if (problem is not null) { problems.Add(new SkippedRow(rowNumber, indexText.Length is > 0 and <= 64 ? indexText : null, problem)); continue; }
            TryIndex(indexText, out long index);
            void Skip(string message) => problems.Add(new SkippedRow(rowNumber, indexText, message));
            if (!seen.Add(index)) { Skip($"the index {index} appears on an earlier row too"); continue; }

            var options = new List<(char Letter, string Text)>();
            foreach (var (column, position) in optionColumns)
                if (!Missing(f[position])) options.Add((column[0], f[position]));
            if (options.Count < 2) { Skip($"{options.Count} option(s); a multiple-choice question needs at least two"); continue; }
            string answerText = f[iAnswer].Trim();
            if (answerText.Length != 1 || !options.Any(o => o.Letter == answerText[0]))
            {
                Skip($"the answer '{Shorten(answerText)}' is not one of the options {string.Join(", ", options.Select(o => o.Letter))}");
                continue;
            }

            string? image = null;
            if (iImage >= 0)
            {
                var value = f[iImage].Trim();
                if (Missing(value))
                {
                    if (requireImages) { Skip("no image"); continue; }
                }
                else if (value.Length > MaxImageReferenceLength) image = value;
                else if (TryIndex(value, out var target) && imageOf.TryGetValue(target.ToString(CultureInfo.InvariantCulture), out var referred)) image = referred;
                else if (requireImages)
                {
                    // A short field that is not an index is most likely damaged base64, not a reference.
                    Skip(TryIndex(value, out _)
                        ? $"the image field '{value}' refers to no row with an image"
                        : $"the image field '{value}' is neither base64 image data (over {MaxImageReferenceLength} characters) nor the index of another row");
                    continue;
                }
            }

            string? hint = iHint >= 0 && !Missing(f[iHint]) ? f[iHint] : null;
            string category = iCategory >= 0 && !Missing(f[iCategory]) ? f[iCategory] : "";
            string l2 = iL2 >= 0 && !Missing(f[iL2]) ? f[iL2] : "";
            string? group = iGroup >= 0 && !Missing(f[iGroup]) ? f[iGroup] : null;
            // A prediction is free text: only an empty field is missing (pandas would also read "None" as NaN,
            // which VLMEvalKit then scores as the text "nan" — no option either way).
            string? prediction = iPrediction >= 0 ? f[iPrediction] : null;
            rows.Add(new BenchmarkRow(rowNumber, indexText, index, new MultipleChoiceQuestion(f[iQuestion], hint, options, lang), answerText[0],
                category, l2, group, image, prediction, f));
        }
        return new BenchmarkFile(name, lang, table.Columns, iGroup >= 0, rows, problems.OrderBy(p => p.Row).ToList());
    }

    /// <summary>The rows of the first <paramref name="units"/> scored units under <paramref name="protocol"/>, in file order.</summary>
    public IReadOnlyList<BenchmarkRow> FirstUnits(int units, ScoringProtocol protocol)
    {
        if (units < 0) throw new ArgumentOutOfRangeException(nameof(units), "the limit must be ≥ 0");
        var keep = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<BenchmarkRow>();
        foreach (var r in Rows)
        {
            var key = Scoring.UnitKey(r.Index, r.Group, protocol);
            if (!keep.Contains(key))
            {
                if (keep.Count == units) continue;
                keep.Add(key);
            }
            result.Add(r);
        }
        return result;
    }

    /// <summary>Whether a field is a missing value as pandas reads it.</summary>
    public static bool Missing(string field) => NaMarkers.Contains(field.Trim());

    private static int Required(TsvTable table, string column, string source)
    {
        int i = table.IndexOf(column);
        return i >= 0 ? i : throw new InvalidDataException($"{source}: no '{column}' column (columns: {string.Join(", ", table.Columns)})");
    }

    /// <summary>An integer index, as pandas may also write it ("12" or "12.0").</summary>
    private static bool TryIndex(string s, out long index)
    {
        s = s.Trim();
        if (long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out index)) return true;
        if (s.EndsWith(".0", StringComparison.Ordinal) && long.TryParse(s[..^2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out index)) return true;
        index = 0;
        return false;
    }

    /// <summary>The 1-based data-row number of each kept row (rows left out by the table parser count too).</summary>
    internal static int[] RowNumbers(TsvTable table)
    {
        var skipped = table.Skipped.Select(s => s.Row).ToHashSet();
        var numbers = new int[table.Rows.Count];
        int row = 1;
        for (int k = 0; k < numbers.Length; k++)
        {
            while (skipped.Contains(row)) row++;
            numbers[k] = row++;
        }
        return numbers;
    }

    private static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
