using System.Text;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// A tab-separated table as VLMEvalKit (pandas) writes it: a header row, then rows whose fields may be
/// double-quoted (with doubled quotes inside), so a field can hold tabs, quotes and newlines.
/// </summary>
public sealed class TsvTable
{
    /// <summary>Column names, in order.</summary>
    public IReadOnlyList<string> Columns { get; }
    /// <summary>Rows, each with one value per column.</summary>
    public IReadOnlyList<string[]> Rows { get; }

    private readonly Dictionary<string, int> _index;

    private TsvTable(string[] columns, List<string[]> rows)
    {
        Columns = columns;
        Rows = rows;
        _index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < columns.Length; i++) _index.TryAdd(columns[i], i);
    }

    /// <summary>The position of a column, or −1.</summary>
    public int IndexOf(string column) => _index.TryGetValue(column, out int i) ? i : -1;

    /// <summary>Reads a TSV file; errors name the file and the line.</summary>
    public static TsvTable Read(string path)
    {
        string text;
        try { text = File.ReadAllText(path, Encoding.UTF8); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InvalidDataException($"{path}: cannot read: {e.Message}", e); }
        return Parse(text, path);
    }

    /// <summary>Parses TSV text; <paramref name="source"/> names it in errors.</summary>
    public static TsvTable Parse(string text, string source)
    {
        var records = new List<string[]>();
        var fields = new List<string>();
        var field = new StringBuilder();
        int i = 0, line = 1;
        bool quoted = false, fieldStarted = false;
        while (i < text.Length)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"')
                {
                    if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i += 2; continue; }
                    quoted = false; i++; continue;
                }
                if (c == '\n') line++;
                field.Append(c); i++; continue;
            }
            if (c == '"' && !fieldStarted) { quoted = true; fieldStarted = true; i++; continue; }
            if (c == '\t') { fields.Add(field.ToString()); field.Clear(); fieldStarted = false; i++; continue; }
            if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n') { i++; continue; }
            if (c == '\n')
            {
                fields.Add(field.ToString()); field.Clear(); fieldStarted = false;
                records.Add(fields.ToArray()); fields.Clear();
                line++; i++; continue;
            }
            field.Append(c); fieldStarted = true; i++;
        }
        if (quoted) throw new InvalidDataException($"{source}: line {line}: a quoted field is not closed");
        if (field.Length > 0 || fields.Count > 0) { fields.Add(field.ToString()); records.Add(fields.ToArray()); }
        records.RemoveAll(r => r.Length == 1 && r[0].Length == 0);
        if (records.Count == 0) throw new InvalidDataException($"{source}: empty table (no header)");
        var header = records[0];
        var rows = new List<string[]>(records.Count - 1);
        for (int r = 1; r < records.Count; r++)
        {
            var rec = records[r];
            // pandas writes an unnamed leading index column in some exports: tolerate one extra field only when the header has an empty first name.
            if (rec.Length != header.Length)
                throw new InvalidDataException($"{source}: row {r} has {rec.Length} fields but the header has {header.Length}");
            rows.Add(rec);
        }
        return new TsvTable(header, rows);
    }

    /// <summary>Writes a table the way pandas does for VLMEvalKit: every field double-quoted, quotes doubled; atomically.</summary>
    public static void Write(string path, IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows)
    {
        var sb = new StringBuilder();
        sb.AppendJoin('\t', columns.Select(Quote)).Append('\n');
        foreach (var r in rows) sb.AppendJoin('\t', r.Select(Quote)).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString());

        static string Quote(string s) => "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }
}
