using System.Globalization;

namespace Parrot.Parrot.Evaluation;

/// <summary>One multiple-choice benchmark question with its image, as read from a VLMEvalKit TSV.</summary>
/// <param name="Index">The TSV index.</param>
/// <param name="Category">The category column ("" when absent).</param>
/// <param name="Question">The question, its options and its language (builds the prompt, extracts the answer).</param>
/// <param name="Answer">The correct option letter.</param>
/// <param name="ImageBase64">The image as the TSV holds it (base64), resolved when the row refers to another row's image.</param>
public sealed record McqItem(long Index, string Category, MultipleChoiceQuestion Question, char Answer, string ImageBase64)
{
    /// <summary>The image file bytes.</summary>
    public byte[] ImageBytes() => Convert.FromBase64String(ImageBase64);
}

/// <summary>Reads the multiple-choice questions of a VLMEvalKit TSV (PARROT.md "Benchmarks").</summary>
public static class McqItems
{
    /// <summary>
    /// The questions of <paramref name="path"/> asked in <paramref name="language"/>: columns index, image,
    /// question, answer and options A–D (empty = absent) are required; hint and category are optional. An image
    /// value of at most 64 characters is the index of the row whose image it reuses. Errors name the file and row.
    /// </summary>
    public static List<McqItem> Load(string path, string language)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BenchmarkLanguages.Instructions.ContainsKey(language)) throw new ArgumentException($"{path}: no multiple-choice instruction for language '{language}'");
        var table = TsvTable.Read(path);
        int Col(string name) => table.IndexOf(name) is int i and >= 0 ? i : throw new InvalidDataException($"{path}: no '{name}' column");
        int index = Col("index"), image = Col("image"), question = Col("question"), answer = Col("answer");
        int hint = table.IndexOf("hint"), category = table.IndexOf("category");
        var letters = new[] { 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H' }.Where(l => table.IndexOf(l.ToString()) >= 0).ToArray();
        if (letters.Length < 2) throw new InvalidDataException($"{path}: fewer than two option columns (A, B, ...)");

        var imageOf = new Dictionary<long, string>();
        var rows = new List<(long Index, string[] Row)>(table.Rows.Count);
        for (int r = 0; r < table.Rows.Count; r++)
        {
            var row = table.Rows[r];
            if (!long.TryParse(row[index], NumberStyles.Integer, CultureInfo.InvariantCulture, out long idx))
                throw new InvalidDataException($"{path}: row {r + 1}: index '{row[index]}' is not an integer");
            if (!imageOf.TryAdd(idx, row[image])) throw new InvalidDataException($"{path}: row {r + 1}: index {idx} appears twice");
            rows.Add((idx, row));
        }
        var items = new List<McqItem>(rows.Count);
        foreach (var (idx, row) in rows)
        {
            string img = row[image];
            if (img.Length <= 64)
            {
                if (!long.TryParse(img, NumberStyles.Integer, CultureInfo.InvariantCulture, out long refIdx) || !imageOf.TryGetValue(refIdx, out var refImg) || refImg.Length <= 64)
                    throw new InvalidDataException($"{path}: row with index {idx}: the image '{img}' is neither base64 data nor the index of a row with an image");
                img = refImg;
            }
            var options = letters.Where(l => row[table.IndexOf(l.ToString())].Length > 0).Select(l => (l, row[table.IndexOf(l.ToString())])).ToList();
            if (options.Count < 2) throw new InvalidDataException($"{path}: row with index {idx}: fewer than two options");
            var ans = row[answer].Trim();
            if (ans.Length != 1 || !options.Any(o => o.l == ans[0]))
                throw new InvalidDataException($"{path}: row with index {idx}: the answer '{row[answer]}' is not one of the options' letters");
            var q = new MultipleChoiceQuestion(row[question], hint >= 0 ? row[hint] : null, options, language);
            items.Add(new McqItem(idx, category >= 0 ? row[category] : "", q, ans[0], img));
        }
        return items;
    }
}
