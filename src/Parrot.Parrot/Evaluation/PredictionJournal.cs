using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Parrot.Parrot.Evaluation;

/// <summary>
/// The partial results of an evaluation run, so that a killed run picks up where it stopped: a JSON-lines
/// file whose first line describes the run (<c>{"format": "parrot-eval-partial", "run": {…}}</c>) and each
/// further line one answer (<c>{"dataset", "index", "prediction"}</c>), appended and flushed as soon as it
/// is generated. A torn last line (the process died while writing it) is cut off when the journal is
/// reopened. Reopening it for a different run (any value of the run's description differs or is missing: another
/// model, checkpoint, data file or token limit, as the caller describes them) is an error, so answers of two runs are
/// never mixed.
/// </summary>
public sealed class PredictionJournal : IDisposable
{
    private const string Format = "parrot-eval-partial";
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Dictionary<(string Dataset, string Index), string> _done = new();
    private readonly FileStream _file;

    /// <summary>The journal's path.</summary>
    public string Path { get; }

    /// <summary>How many answers the journal held when it was opened.</summary>
    public int Recovered { get; }

    private PredictionJournal(string path, FileStream file, int recovered)
    {
        Path = path; _file = file; Recovered = recovered;
    }

    /// <summary>
    /// Opens (or creates) the journal at <paramref name="path"/> for the run described by <paramref name="run"/>
    /// (string keys and values, e.g. the model directory and max_new_tokens).
    /// </summary>
    /// <exception cref="InvalidDataException">The file belongs to another run or is not a journal.</exception>
    public static PredictionJournal Open(string path, IReadOnlyDictionary<string, string> run)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(run);
        var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            var done = new Dictionary<(string, string), string>();
            var bytes = new byte[file.Length];
            file.ReadExactly(bytes);
            int end = Array.LastIndexOf(bytes, (byte)'\n') + 1; // everything after the last newline is a torn line
            if (end == 0)
            {
                file.SetLength(0);
                file.Position = 0;
                WriteLine(file, w =>
                {
                    w.WriteString("format", Format);
                    w.WriteStartObject("run");
                    foreach (var (k, v) in run.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                    w.WriteEndObject();
                });
            }
            else
            {
                var lines = Encoding.UTF8.GetString(bytes, 0, end).Split('\n');
                CheckHeader(path, lines[0], run);
                for (int i = 1; i < lines.Length; i++)
                {
                    if (lines[i].Length == 0) continue;
                    try
                    {
                        using var doc = JsonDocument.Parse(lines[i]);
                        var r = doc.RootElement;
                        done[(r.GetProperty("dataset").GetString()!, r.GetProperty("index").GetString()!)] = r.GetProperty("prediction").GetString()!;
                    }
                    catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                    {
                        throw new InvalidDataException($"{path}: line {i + 1} is not an answer record ({e.Message}); delete the file to start over");
                    }
                }
                file.SetLength(end);
                file.Position = end;
            }
            var journal = new PredictionJournal(path, file, done.Count);
            foreach (var kv in done) journal._done[kv.Key] = kv.Value;
            return journal;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether the file at <paramref name="path"/> holds a journal's first line, whole: <see cref="Open"/> keeps such a file
    /// (checks it belongs to the run, cuts a torn last line). A file without one (none, empty, or torn within the header, as
    /// a run killed before its first answer leaves it: the header is flushed with that answer) is started over by
    /// <see cref="Open"/>, which writes the run's header into it. So a caller that must write nothing before a check
    /// (parrot eval refusing a run) opens only a started journal before it; one not started answers nothing.
    /// </summary>
    public static bool IsStarted(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) return false;
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var buffer = new byte[4096];
        for (int n; (n = file.Read(buffer)) > 0;)
            if (Array.IndexOf(buffer, (byte)'\n', 0, n) >= 0) return true;
        return false;
    }

    private static void CheckHeader(string path, string line, IReadOnlyDictionary<string, string> run)
    {
        Dictionary<string, string> recorded;
        try
        {
            using var doc = JsonDocument.Parse(line);
            if (!doc.RootElement.TryGetProperty("format", out var f) || f.GetString() != Format) throw new JsonException("no format");
            recorded = doc.RootElement.GetProperty("run").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: not a partial-results file of parrot eval; delete it or choose another output folder");
        }
        foreach (var (k, v) in run)
        {
            // A journal of an older parrot lacks what later versions record (data hashes, folder fingerprints, dtype):
            // say so, instead of a mismatch against a value it never had.
            if (!recorded.TryGetValue(k, out var old))
                throw new InvalidDataException($"{path}: partial results written by an older parrot, which did not record {k}; delete the file or choose another output folder");
            if (old != v)
                throw new InvalidDataException($"{path}: partial results of another run ({k} was '{old}', now '{v}'); delete the file or choose another output folder");
        }
    }

    /// <summary>The recorded answer to row <paramref name="index"/> of <paramref name="dataset"/>, if any.</summary>
    public bool TryGet(string dataset, string index, out string prediction) => _done.TryGetValue((dataset, index), out prediction!);

    /// <summary>Records an answer and flushes it to the operating system before returning.</summary>
    public void Append(string dataset, string index, string prediction)
    {
        WriteLine(_file, w =>
        {
            w.WriteString("dataset", dataset);
            w.WriteString("index", index);
            w.WriteString("prediction", prediction);
        });
        _file.Flush();
        _done[(dataset, index)] = prediction;
    }

    private static void WriteLine(FileStream file, Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        file.Write(buffer.GetBuffer(), 0, (int)buffer.Length); // one write per line
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _file.Dispose();
}
