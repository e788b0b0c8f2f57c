using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// The files an evaluation writes: <c>predictions.tsv</c> (every question with its answer), <c>summary.json</c>
/// and <c>summary.md</c> (accuracy per dataset — one language each —, per category and per l2-category, the
/// unmatched answers and the language-fidelity rate).
/// </summary>
public static class EvaluationReport
{
    /// <summary>The columns added after the benchmark's own in predictions.tsv.</summary>
    public static readonly IReadOnlyList<string> AddedColumns = ["dataset", "lang", "prediction", "extracted", "hit"];

    /// <summary>How many unmatched answers per dataset summary.md lists.</summary>
    public const int UnmatchedShown = 10;

    /// <summary>Writes predictions.tsv, summary.json and summary.md into <paramref name="directory"/> (created if needed), each atomically.</summary>
    public static void Write(string directory, IReadOnlyList<DatasetResult> results)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(results);
        Directory.CreateDirectory(directory);
        var (columns, rows) = Predictions(results);
        TsvTable.Write(Path.Combine(directory, "predictions.tsv"), columns, rows);
        AtomicFile.WriteAllText(Path.Combine(directory, "summary.json"), SummaryJson(results));
        AtomicFile.WriteAllText(Path.Combine(directory, "summary.md"), SummaryMarkdown(results));
    }

    /// <summary>
    /// The predictions table: the input columns without <c>image</c> (the union over the datasets, in order of
    /// appearance), then <c>dataset</c> (the input file's name), <c>lang</c>, <c>prediction</c> (the raw
    /// generated text), <c>extracted</c> (the option letter or 'Z') and <c>hit</c> (1 or 0).
    /// </summary>
    public static (List<string> Columns, List<string[]> Rows) Predictions(IReadOnlyList<DatasetResult> results)
    {
        var columns = new List<string>();
        foreach (var r in results)
            foreach (var c in r.File.Columns)
                if (c != "image" && !AddedColumns.Contains(c) && !columns.Contains(c)) columns.Add(c);
        int own = columns.Count;
        columns.AddRange(AddedColumns);
        var rows = new List<string[]>();
        foreach (var r in results)
        {
            var position = columns.Take(own).Select(c => r.File.Columns.ToList().IndexOf(c)).ToArray();
            foreach (var p in r.Rows)
            {
                var line = new string[columns.Count];
                for (int i = 0; i < own; i++) line[i] = position[i] >= 0 ? p.Row.Fields[position[i]] : "";
                line[own] = r.File.Name;
                line[own + 1] = r.File.Language;
                line[own + 2] = p.Prediction;
                line[own + 3] = p.Extracted.ToString();
                line[own + 4] = p.Hit ? "1" : "0";
                rows.Add(line);
            }
        }
        return (columns, rows);
    }

    /// <summary>
    /// summary.json: <c>datasets</c> → file name → <c>lang</c>, <c>protocol</c>, <c>n</c> (scored units),
    /// <c>questions</c>, <c>overall</c>, <c>category</c> and <c>l2-category</c> (name → accuracy), <c>unmatched</c>,
    /// <c>skipped_rows</c> and <c>language_fidelity</c> (<c>rate</c> — null when no answer's language could be
    /// told —, <c>free_form</c>, <c>in_language</c>, <c>undetermined</c>); then <c>language_fidelity</c> over all
    /// datasets. Accuracies and rates are fractions in [0, 1].
    /// </summary>
    public static string SummaryJson(IReadOnlyList<DatasetResult> results)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject("datasets");
            foreach (var r in results)
            {
                w.WriteStartObject(r.File.Name);
                w.WriteString("lang", r.File.Language);
                w.WriteString("protocol", Scoring.Name(r.Protocol));
                w.WriteNumber("n", r.Score.Count);
                w.WriteNumber("questions", r.Rows.Count);
                w.WriteNumber("overall", r.Score.Overall);
                WriteMap(w, "category", r.Score.PerCategory);
                WriteMap(w, "l2-category", r.Score.PerL2Category);
                w.WriteNumber("unmatched", r.Unmatched.Count);
                w.WriteNumber("skipped_rows", r.Problems.Count);
                WriteFidelity(w, r.Fidelity);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            WriteFidelity(w, results.Aggregate(new LanguageFidelity(0, 0, 0), (a, r) => a + r.Fidelity));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";

        static void WriteMap(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, double> map)
        {
            w.WriteStartObject(name);
            foreach (var (k, v) in map) w.WriteNumber(k, v);
            w.WriteEndObject();
        }

        static void WriteFidelity(Utf8JsonWriter w, LanguageFidelity f)
        {
            w.WriteStartObject("language_fidelity");
            if (f.Rate is double rate) w.WriteNumber("rate", rate); else w.WriteNull("rate");
            w.WriteNumber("free_form", f.FreeForm);
            w.WriteNumber("in_language", f.InLanguage);
            w.WriteNumber("undetermined", f.Undetermined);
            w.WriteEndObject();
        }
    }

    /// <summary>summary.md: the overall table (one line per dataset and language), accuracy per category and per l2-category, and the first unmatched answers.</summary>
    public static string SummaryMarkdown(IReadOnlyList<DatasetResult> results)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append("# Evaluation\n\n");
        sb.Append("Accuracy in %. `n`: scored units (questions; circular: all rotated copies of a question; grouped: a group). ")
          .Append("Unmatched: answers from which no option could be extracted (scored wrong). ")
          .Append("Language fidelity: share of free-form answers (more than a bare option letter) written in the question's language, by script and stop words; undetermined answers are left out.\n\n");
        sb.Append("| dataset | lang | protocol | n | overall | unmatched | skipped rows | language fidelity |\n|---|---|---|---:|---:|---:|---:|---|\n");
        foreach (var r in results)
            sb.Append(inv, $"| {Cell(r.File.Name)} | {r.File.Language} | {Scoring.Name(r.Protocol)} | {r.Score.Count} | {Percent(r.Score.Overall)} | {r.Unmatched.Count} of {r.Rows.Count} | {r.Problems.Count} | {r.Fidelity} |\n");
        var all = results.Aggregate(new LanguageFidelity(0, 0, 0), (a, r) => a + r.Fidelity);
        sb.Append("\nLanguage fidelity over all datasets: ").Append(all).Append(".\n");

        Table(sb, "category", results, r => r.Score.PerCategory);
        Table(sb, "l2-category", results, r => r.Score.PerL2Category);

        if (results.Any(r => r.Unmatched.Count > 0))
        {
            sb.Append(inv, $"\n## Unmatched answers (first {UnmatchedShown} per dataset)\n\n| dataset | index | prediction |\n|---|---|---|\n");
            foreach (var r in results)
                foreach (var u in r.Unmatched.Take(UnmatchedShown))
                    sb.Append(inv, $"| {Cell(r.File.Name)} | {Cell(u.Row.IndexText)} | {Cell(u.Prediction.Length > 200 ? u.Prediction[..200] + "…" : u.Prediction)} |\n");
        }
        if (results.Any(r => r.Problems.Count > 0))
        {
            sb.Append("\n## Skipped rows\n\n| dataset | row | problem |\n|---|---|---|\n");
            foreach (var r in results)
                foreach (var p in r.Problems)
                    sb.Append(inv, $"| {Cell(r.File.Name)} | {p.Row}{(p.Index is null ? "" : $" (index {Cell(p.Index)})")} | {Cell(p.Message)} |\n");
        }
        return sb.ToString();
    }

    private static void Table(StringBuilder sb, string title, IReadOnlyList<DatasetResult> results, Func<DatasetResult, IReadOnlyDictionary<string, double>> per)
    {
        var names = results.SelectMany(r => per(r).Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        if (names.Count == 0) return;
        sb.Append("\n## Accuracy per ").Append(title).Append(" (%)\n\n| ").Append(title);
        foreach (var r in results) sb.Append(" | ").Append(Cell(r.File.Name)).Append(" (").Append(r.File.Language).Append(')');
        sb.Append(" |\n|---").Append(string.Concat(Enumerable.Repeat("|---:", results.Count))).Append("|\n");
        foreach (var name in names)
        {
            sb.Append("| ").Append(Cell(name));
            foreach (var r in results) sb.Append(" | ").Append(per(r).TryGetValue(name, out var a) ? Percent(a) : "–");
            sb.Append(" |\n");
        }
    }

    private static string Percent(double fraction) => (100 * fraction).ToString("F2", CultureInfo.InvariantCulture);

    /// <summary>Text safe inside a markdown table cell: pipes escaped, line breaks and tabs shown as spaces.</summary>
    private static string Cell(string s) =>
        s.Replace("|", "\\|", StringComparison.Ordinal).Replace("\r", " ", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal).Replace("\t", " ", StringComparison.Ordinal);
}
