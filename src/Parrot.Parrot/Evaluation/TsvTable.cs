using System.Text;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Evaluation;

/// <summary>A data row of a table that could not be read and was left out.</summary>
/// <param name="Row">1-based position among the data rows (the header is not counted).</param>
/// <param name="Index">The row's first field (its <c>index</c> in VLMEvalKit files), when there is one.</param>
/// <param name="Message">What is wrong.</param>
public sealed record SkippedRow(int Row, string? Index, string Message)
{
    /// <summary>"row R (index I): message".</summary>
    public override string ToString() => Index is null ? $"row {Row}: {Message}" : $"row {Row} (index {Index}): {Message}";
}

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
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Data rows left out by a lenient parse (a field count that differs from the header's).</summary>
    public IReadOnlyList<SkippedRow> Skipped { get; }

    /// <summary>A table from columns and rows; every row must have one value per column.</summary>
    public TsvTable(IReadOnlyList<string> columns, IEnumerable<string[]> rows)
        : this(columns.ToArray(), rows.ToList(), [])
    {
        for (int r = 0; r < Rows.Count; r++)
            if (Rows[r].Length != Columns.Count) throw new ArgumentException($"TsvTable: row {r + 1} has {Rows[r].Length} fields but there are {Columns.Count} columns");
    }

    private TsvTable(string[] columns, List<string[]> rows, List<SkippedRow> skipped)
    {
        Columns = columns;
        Rows = rows;
        Skipped = skipped;
        _index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < columns.Length; i++) _index.TryAdd(columns[i], i);
    }

    /// <summary>The position of a column, or −1.</summary>
    public int IndexOf(string column) => _index.TryGetValue(column, out int i) ? i : -1;

    /// <summary>
    /// Reads a TSV file; errors name the file and the line. With <paramref name="skipMalformedRows"/> a row
    /// whose field count differs from the header's is left out and listed in <see cref="Skipped"/> instead.
    /// </summary>
    public static TsvTable Read(string path, bool skipMalformedRows = false)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException e) { throw new FileNotFoundException($"{path}: no such file", path, e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InvalidDataException($"{path}: cannot read: {e.Message}", e); }
        int start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        string text;
        // Strictly: a file saved in another encoding (GBK, Latin-1) would otherwise turn into U+FFFD questions, silently.
        try { text = StrictUtf8.GetString(bytes, start, bytes.Length - start); }
        catch (DecoderFallbackException e)
        {
            int at = start + e.Index, line = 1 + bytes.AsSpan(0, Math.Clamp(at, 0, bytes.Length)).Count((byte)'\n');
            throw new InvalidDataException($"{path}: line {line}: not valid UTF-8 (byte 0x{e.BytesUnknown?[0]:X2}); save the file as UTF-8", e);
        }
        return Parse(text, path, skipMalformedRows);
    }

    /// <summary>Parses TSV text; <paramref name="source"/> names it in errors. See <see cref="Read"/>.</summary>
    public static TsvTable Parse(string text, string source, bool skipMalformedRows = false)
    {
        ArgumentNullException.ThrowIfNull(text);
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
        var skipped = new List<SkippedRow>();
        for (int r = 1; r < records.Count; r++)
        {
            var rec = records[r];
            if (rec.Length != header.Length)
            {
                var problem = $"has {rec.Length} fields but the header has {header.Length}";
                if (!skipMalformedRows) throw new InvalidDataException($"{source}: row {r} {problem}");
                skipped.Add(new SkippedRow(r, rec.Length > 0 && rec[0].Length is > 0 and <= 64 ? rec[0] : null, problem));
                continue;
            }
            rows.Add(rec);
        }
        return new TsvTable(header, rows, skipped);
    }

    /// <summary>Writes a table the way pandas does for VLMEvalKit: every field double-quoted, quotes doubled; atomically.</summary>
    public static void Write(string path, IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows) =>
        AtomicFile.WriteAllText(path, Format(columns, rows));

    /// <summary>The text <see cref="Write"/> writes: every field double-quoted with quotes doubled, tab-separated, one line per row.</summary>
    public static string Format(IReadOnlyList<string> columns, IEnumerable<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(columns);
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        sb.AppendJoin('\t', columns.Select(Quote)).Append('\n');
        foreach (var r in rows)
        {
            if (r.Count != columns.Count) throw new ArgumentException($"TsvTable.Write: a row has {r.Count} fields but there are {columns.Count} columns");
            sb.AppendJoin('\t', r.Select(Quote)).Append('\n');
        }
        return sb.ToString();

        static string Quote(string s) => "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    }
}
