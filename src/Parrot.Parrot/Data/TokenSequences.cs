using System.Text.Json;

namespace Parrot.Parrot.Data;

/// <summary>Token-id sequences read from a JSON-lines file of <c>{"ids": [...]}</c> objects, validated.</summary>
public static class TokenSequences
{
    /// <summary>
    /// Reads every non-empty line of <paramref name="path"/>. Every line must be an object with an "ids"
    /// array of integers in [0, <paramref name="vocabSize"/>); errors name the file and the line.
    /// </summary>
    public static List<int[]> Read(string path, int vocabSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: token file not found", path);
        var result = new List<int[]>();
        foreach (var (lineNo, line) in Utf8Lines.Read(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            int[] ids;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("ids", out var arr) || arr.ValueKind != JsonValueKind.Array)
                    throw new InvalidDataException($"{path}:{lineNo}: expected an object with an \"ids\" array");
                ids = new int[arr.GetArrayLength()];
                int i = 0;
                foreach (var e in arr.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
                        throw new InvalidDataException($"{path}:{lineNo}: ids[{i}] is not an integer");
                    if (id < 0 || id >= vocabSize)
                        throw new InvalidDataException($"{path}:{lineNo}: ids[{i}] = {id} is outside the vocabulary [0, {vocabSize})");
                    ids[i++] = id;
                }
            }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{lineNo}: not valid JSON: {e.Message}", e); }
            result.Add(ids);
        }
        if (result.Count == 0) throw new InvalidDataException($"{path}: no sequences");
        return result;
    }
}
