using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Parrot.Tensors.Formats;

/// <summary>
/// <c>model.safetensors.index.json</c>, the table of a sharded Hugging Face checkpoint:
/// <c>{"metadata": {"total_size": 123, ...}, "weight_map": {"tensor name": "shard file", ...}}</c>.
/// <para>Reading validates the JSON (an object; <c>weight_map</c> present, an object of strings, no name
/// twice; <c>metadata</c>, if present, an object or null; other keys ignored) and every shard file name:
/// relative, without <c>..</c> segments, inside the index's folder after normalisation, and existing. The
/// check is lexical, so shards that are symbolic links into a cache (as the Hugging Face hub lays them
/// out) are fine.</para>
/// <para>Writing produces what Python's <c>json.dumps(index, indent=2, sort_keys=True)</c> followed by a
/// newline produces, as transformers writes it.</para>
/// </summary>
internal sealed class SafetensorsIndex
{
    /// <summary>Largest index accepted: real ones are a few MB at most.</summary>
    public const long MaxIndexBytes = 100_000_000;

    private SafetensorsIndex(Dictionary<string, string> metadata, List<KeyValuePair<string, string>> weightMap, List<string> shardFiles, List<string> shardPaths)
    {
        Metadata = metadata;
        WeightMap = weightMap;
        ShardFiles = shardFiles;
        ShardPaths = shardPaths;
    }

    /// <summary>The "metadata" entries: strings as they are, other JSON values as their JSON text (e.g. "123").</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensor name → shard file name as written in the index, in index order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> WeightMap { get; }

    /// <summary>The distinct shard file names, in order of first mention.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    /// <summary>Full paths of <see cref="ShardFiles"/>, in the same order.</summary>
    public IReadOnlyList<string> ShardPaths { get; }

    /// <summary>Reads and validates the index at <paramref name="path"/>.</summary>
    public static SafetensorsIndex Read(string path)
    {
        byte[] json;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16))
        {
            if (file.Length > MaxIndexBytes)
                throw Bad(path, null, $"the index has {file.Length} bytes, more than the {MaxIndexBytes} allowed");
            json = new byte[file.Length];
            file.ReadExactly(json);
        }
        if (!Utf8.IsValid(json)) throw Bad(path, null, "the index is not valid UTF-8");
        Dictionary<string, string> metadata;
        List<KeyValuePair<string, string>> weightMap;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
            (metadata, weightMap) = ParseRoot(ref reader, path);
        }
        catch (JsonException e)
        {
            throw Bad(path, null, $"the index is not valid JSON: {e.Message}");
        }
        catch (InvalidOperationException e)
        {
            throw Bad(path, null, $"the index holds a string that is not valid Unicode: {e.Message}");
        }

        string folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        var files = new List<string>();
        var paths = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shard) in weightMap)
        {
            if (!seen.Add(shard)) continue;
            files.Add(shard);
            paths.Add(ResolveShard(path, folder, name, shard));
        }
        return new SafetensorsIndex(metadata, weightMap, files, paths);
    }

    private static (Dictionary<string, string>, List<KeyValuePair<string, string>>) ParseRoot(ref Utf8JsonReader r, string path)
    {
        if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
            throw Bad(path, null, "the index must be a JSON object with a \"weight_map\"");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        List<KeyValuePair<string, string>>? weightMap = null;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) break;
            string key = r.GetString()!;
            if (!keys.Add(key)) throw Bad(path, null, $"the key \"{FormatText.Printable(key)}\" appears twice at the top of the index");
            Next(ref r, path);
            switch (key)
            {
                case "metadata":
                    ParseMetadata(ref r, metadata, path);
                    break;
                case "weight_map":
                    weightMap = ParseWeightMap(ref r, path);
                    break;
                default:
                    r.Skip();
                    break;
            }
        }
        if (r.Read()) throw Bad(path, null, "unexpected JSON after the index object");
        if (weightMap is null) throw Bad(path, null, "the index has no \"weight_map\"");
        return (metadata, weightMap);
    }

    private static void ParseMetadata(ref Utf8JsonReader r, Dictionary<string, string> metadata, string path)
    {
        if (r.TokenType == JsonTokenType.Null) return;
        if (r.TokenType != JsonTokenType.StartObject) throw Bad(path, null, "\"metadata\" must be an object");
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return;
            string key = r.GetString()!;
            if (metadata.ContainsKey(key)) throw Bad(path, null, $"\"metadata\" has the key \"{FormatText.Printable(key)}\" twice");
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.String) metadata.Add(key, r.GetString()!);
            else
            {
                using var value = JsonDocument.ParseValue(ref r);
                metadata.Add(key, value.RootElement.GetRawText());
            }
        }
    }

    private static List<KeyValuePair<string, string>> ParseWeightMap(ref Utf8JsonReader r, string path)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw Bad(path, null, "\"weight_map\" must be an object mapping tensor names to shard files");
        var map = new List<KeyValuePair<string, string>>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            Next(ref r, path);
            if (r.TokenType == JsonTokenType.EndObject) return map;
            string name = r.GetString()!;
            if (!names.Add(name)) throw Bad(path, name, "the name appears twice in \"weight_map\"");
            Next(ref r, path);
            if (r.TokenType != JsonTokenType.String) throw Bad(path, name, "its \"weight_map\" value must be a shard file name (a string)");
            map.Add(new(name, r.GetString()!));
        }
    }

    private static string ResolveShard(string indexPath, string folder, string tensor, string shard)
    {
        string Problem(string what) => $"the index maps it to shard \"{FormatText.Printable(shard)}\", {what}";
        if (shard.Length == 0) throw Bad(indexPath, tensor, "the index maps it to an empty shard file name");
        if (shard.Contains('\0')) throw Bad(indexPath, tensor, Problem("whose name holds a NUL character"));
        if (Path.IsPathRooted(shard) || shard[0] is '/' or '\\' || shard.Length >= 2 && shard[1] == ':')
            throw Bad(indexPath, tensor, Problem("an absolute path; shards must lie in the checkpoint's folder"));
        if (shard.Split('/', '\\').Any(segment => segment == ".."))
            throw Bad(indexPath, tensor, Problem("which climbs out with '..'; shards must lie in the checkpoint's folder"));
        string root = Path.TrimEndingDirectorySeparator(folder) + Path.DirectorySeparatorChar;
        string full = Path.GetFullPath(Path.Combine(folder, shard));
        if (!full.StartsWith(root, StringComparison.Ordinal))
            throw Bad(indexPath, tensor, Problem("which lies outside the checkpoint's folder"));
        if (!File.Exists(full))
            throw Bad(indexPath, tensor, Problem(Directory.Exists(full) ? "which is a folder" : "which does not exist"));
        return full;
    }

    /// <summary>
    /// The index JSON as transformers writes it (<c>json.dumps(..., indent=2, sort_keys=True) + "\n"</c>):
    /// "metadata" holding "total_size" (a number) and <paramref name="metadata"/> (strings), then
    /// "weight_map"; keys sorted by code point, non-ASCII characters escaped as \uXXXX.
    /// </summary>
    public static byte[] Build(long totalSize, IReadOnlyDictionary<string, string>? metadata, IEnumerable<KeyValuePair<string, string>> weightMap)
    {
        var meta = new List<KeyValuePair<string, string>> { new("total_size", totalSize.ToString(System.Globalization.CultureInfo.InvariantCulture)) };
        if (metadata is not null)
            foreach (var (k, v) in metadata) meta.Add(new(k, PyString(v)));
        var sb = new StringBuilder("{\n  \"metadata\": ");
        AppendObject(sb, meta);
        sb.Append(",\n  \"weight_map\": ");
        AppendObject(sb, weightMap.Select(kv => new KeyValuePair<string, string>(kv.Key, PyString(kv.Value))));
        sb.Append("\n}\n");
        return Encoding.ASCII.GetBytes(sb.ToString());
    }

    /// <summary>An object at indent level 1 whose values are already JSON text, keys sorted by code point.</summary>
    private static void AppendObject(StringBuilder sb, IEnumerable<KeyValuePair<string, string>> entries)
    {
        var sorted = entries.OrderBy(kv => kv.Key, CodePointComparer.Instance).ToList();
        if (sorted.Count == 0) { sb.Append("{}"); return; }
        sb.Append('{');
        for (int i = 0; i < sorted.Count; i++)
        {
            sb.Append(i == 0 ? "\n    " : ",\n    ").Append(PyString(sorted[i].Key)).Append(": ").Append(sorted[i].Value);
        }
        sb.Append("\n  }");
    }

    /// <summary>A JSON string as Python's json module writes it with ensure_ascii (the default).</summary>
    private static string PyString(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    // UTF-16 code units are exactly Python's escapes, surrogate pairs included.
                    if (c < ' ' || c > '~') sb.Append($"\\u{(int)c:x4}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }

    /// <summary>Orders strings by Unicode code point, as Python sorts them (UTF-16 ordinal order differs above U+FFFF).</summary>
    private sealed class CodePointComparer : IComparer<string>
    {
        public static readonly CodePointComparer Instance = new();

        public int Compare(string? x, string? y)
        {
            if (ReferenceEquals(x, y)) return 0;
            if (x is null) return -1;
            if (y is null) return 1;
            // UTF-8 byte order is code point order.
            return Encoding.UTF8.GetBytes(x).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(y));
        }
    }

    private static void Next(ref Utf8JsonReader r, string path)
    {
        if (!r.Read()) throw Bad(path, null, "the index ends inside a JSON value");
    }

    private static InvalidDataException Bad(string path, string? tensor, string problem) => SafetensorsErrors.Bad(path, tensor, problem);
}
