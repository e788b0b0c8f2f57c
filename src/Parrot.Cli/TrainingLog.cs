using System.Text.Json;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// Reads back the JSON-lines logs the training commands write (train_log.jsonl: one object per optimizer step, with an
/// integer "step", a number "loss" and more numbers). A line that cannot be read is named by file and line number with
/// what is wrong, never a bare JsonException or KeyNotFoundException. What happens next depends on the reader:
/// <list type="bullet">
/// <item><see cref="CutBack"/> (train --resume) drops a last line that is not complete JSON, the line a run killed while
/// writing leaves, and refuses any other unreadable line (corruption, not a crash);</item>
/// <item><see cref="ReadForPlot"/> (loss.png, drawn after the model is written) leaves unreadable lines out of the plot
/// and returns them as warnings, so a damaged log cannot fail a finished run.</item>
/// </list>
/// </summary>
internal static class TrainingLog
{
    /// <summary>One readable line: its 1-based line number, its step and its keys with number values.</summary>
    public sealed record Row(int Line, int Step, IReadOnlyDictionary<string, double> Numbers);

    /// <summary>Warnings printed before the rest are only counted (a log of thousands of bad lines is one problem).</summary>
    internal const int WarningsShown = 3;

    /// <summary>
    /// Cuts the log at <paramref name="path"/> back to the steps up to <paramref name="step"/> (those the checkpoint
    /// being resumed covers; the resumed run logs the later ones again). Blank lines go too. A last line that is not
    /// complete JSON is the half-written line of a run killed mid-write: it is dropped, and a note saying so is
    /// returned (else null). The file is replaced atomically, so a run killed now keeps its log; a link is followed and
    /// the file's mode kept (<see cref="Replace"/>).
    /// </summary>
    /// <exception cref="InvalidDataException">Another line cannot be read: names the file, the line and the problem.</exception>
    public static string? CutBack(string path, int step)
    {
        var lines = File.ReadAllLines(path);
        int last = Array.FindLastIndex(lines, l => !string.IsNullOrWhiteSpace(l));
        var kept = new List<string>();
        string? note = null;
        for (int i = 0; i <= last; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            var (row, problem, notJson) = Parse(lines[i], i + 1, required: [], numeric: _ => false);
            if (row is null)
            {
                if (i == last && notJson)
                {
                    note = $"{path}:{i + 1}: dropped a half-written last line (the run was stopped while writing it): {problem}";
                    continue;
                }
                throw new InvalidDataException($"{path}:{i + 1}: {problem}; cannot cut the log back to step {step} for --resume (move the file away or give --log another one)");
            }
            if (row.Step <= step) kept.Add(lines[i]);
        }
        // Written through a symbolic link and keeping the file's mode, as an in-place rewrite would (AtomicFile).
        AtomicFile.WriteAllText(path, string.Concat(kept.Select(l => l + Environment.NewLine)));
        return note;
    }

    /// <summary>
    /// The readable lines of the log at <paramref name="path"/>, in file order, for a plot: each has an integer "step" and a
    /// number "loss", and every key that <paramref name="isCurve"/> picks has a number value. The others are left out, and
    /// the warnings name them (the first <see cref="WarningsShown"/> by file and line with the problem, then a count).
    /// </summary>
    public static (List<Row> Rows, List<string> Warnings) ReadForPlot(string path, Func<string, bool> isCurve)
    {
        var rows = new List<Row>();
        var warnings = new List<string>();
        int bad = 0;
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var (row, problem, _) = Parse(line, lineNo, required: ["loss"], numeric: isCurve);
            if (row is not null) { rows.Add(row); continue; }
            if (++bad <= WarningsShown) warnings.Add($"{path}:{lineNo}: {problem}; left out of the plot");
        }
        if (bad > WarningsShown) warnings.Add($"{path}: {bad - WarningsShown} more unreadable lines left out of the plot ({bad} in all)");
        return (rows, warnings);
    }

    /// <summary>
    /// One line: the row, or null with the problem (and whether the line is not JSON at all, which is what a line cut
    /// short looks like). <paramref name="required"/> keys must be there as numbers; the keys <paramref name="numeric"/>
    /// picks must be numbers where they are there.
    /// </summary>
    internal static (Row? Row, string Problem, bool NotJson) Parse(string line, int lineNo, IReadOnlyList<string> required, Func<string, bool> numeric)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { return (null, $"not complete JSON (byte {(e.BytePositionInLine ?? 0) + 1}: {FirstSentence(e.Message)})", true); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (null, $"a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object with \"step\"", false);
            // A key or string that decodes to an unpaired surrogate throws InvalidOperationException when read.
            if (JsonText.FindUnreadable(root) is { } unreadable) return (null, $"{unreadable} {JsonText.NotText}", false);
            if (!root.TryGetProperty("step", out var s)) return (null, "no \"step\"", false);
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out int step) || step < 0)
                return (null, $"\"step\" is {Raw(s)}, not a step number", false);
            foreach (var key in required)
                if (!root.TryGetProperty(key, out _)) return (null, $"no \"{key}\"", false);
            var numbers = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
            {
                bool mustBeNumber = required.Contains(p.Name) || numeric(p.Name);
                if (p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetDouble(out double v) && double.IsFinite(v)) numbers[p.Name] = v;
                else if (mustBeNumber) return (null, $"{Short(JsonSerializer.Serialize(p.Name))} is {Raw(p.Value)}, not a finite number", false);
            }
            return (new Row(lineNo, step, numbers), "", false);
        }
    }

    private static string Raw(JsonElement e) => Short(e.GetRawText());

    /// <summary>JSON text (escaped, so one printable line) cut to a length a message can show.</summary>
    private static string Short(string json) => json.Length <= 60 ? json : json[..57] + "...";

    /// <summary>System.Text.Json's message without its " LineNumber: 0 | BytePositionInLine: n." tail (the caller says where).</summary>
    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (cut > 0 ? message[..cut] : message).TrimEnd('.', ' ');
    }

    /// <summary>The values of <paramref name="key"/> by step, over the rows that have it.</summary>
    public static (double[] X, double[] Y) Curve(IEnumerable<Row> rows, string key)
    {
        var having = rows.Where(r => r.Numbers.ContainsKey(key)).ToList();
        return (having.Select(r => (double)r.Step).ToArray(), having.Select(r => r.Numbers[key]).ToArray());
    }

    /// <summary>Prints <paramref name="warnings"/> to standard error as warnings of <paramref name="command"/>.</summary>
    public static void Warn(string command, IEnumerable<string> warnings)
    {
        foreach (var w in warnings) Console.Error.WriteLine($"parrot {command}: warning: {w}");
    }
}
