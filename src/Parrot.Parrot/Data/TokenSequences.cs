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
                CheckMasks(doc.RootElement, ids, path, lineNo);
            }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{lineNo}: not valid JSON: {e.Message}", e); }
            result.Add(ids);
        }
        if (result.Count == 0) throw new InvalidDataException($"{path}: no sequences");
        return result;
    }

    /// <summary>
    /// Every token of "ids" is learned and attended to. A Hugging Face style "labels" with -100 (a masked
    /// prompt) or an "attention_mask" with zeros (padding) would otherwise be ignored without a word, and
    /// the prompt or the padding trained on; copies that change nothing (labels = ids, a mask of ones) pass.
    /// </summary>
    private static void CheckMasks(JsonElement line, int[] ids, string path, int lineNo)
    {
        if (line.TryGetProperty("labels", out var labels) && labels.ValueKind != JsonValueKind.Null)
        {
            int at = FirstDifference(labels, ids, i => ids[i]);
            if (at >= 0)
                throw new InvalidDataException($"{path}:{lineNo}: \"labels\" differ from \"ids\" (at position {at}); train-lm learns every next token of \"ids\" and has no label masking: remove \"labels\" or cut the sequences to what should be learned");
        }
        foreach (var key in new[] { "attention_mask", "loss_mask" })
        {
            if (!line.TryGetProperty(key, out var mask) || mask.ValueKind == JsonValueKind.Null) continue;
            int at = FirstDifference(mask, ids, _ => 1);
            if (at >= 0)
                throw new InvalidDataException($"{path}:{lineNo}: \"{key}\" is not all ones (at position {at}); train-lm attends to and learns every token of \"ids\" (no padding or masking): give unpadded sequences of one length without \"{key}\"");
        }
    }

    /// <summary>The first position where <paramref name="values"/> is not <paramref name="expected"/> (or not an integer; a length
    /// mismatch counts at the shorter end), or −1 when they agree.</summary>
    private static int FirstDifference(JsonElement values, int[] ids, Func<int, int> expected)
    {
        if (values.ValueKind != JsonValueKind.Array) return 0;
        int i = 0;
        foreach (var v in values.EnumerateArray())
        {
            if (i >= ids.Length || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int x) || x != expected(i)) return i;
            i++;
        }
        return i == ids.Length ? -1 : i;
    }
}
