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

/// <summary>Reads the multiple-choice questions of a VLMEvalKit TSV (PARROT.md "Benchmarks") for the demo's scorer.</summary>
public static class McqItems
{
    /// <summary>
    /// The questions of <paramref name="path"/> asked in <paramref name="language"/>, read by
    /// <see cref="BenchmarkFile"/> (image references resolved, NA markers treated as missing). Unlike the
    /// <c>parrot eval</c> harness, which skips and reports malformed rows, the demo's own benchmark must be whole:
    /// the first malformed row is an error naming the file, the row and its index.
    /// </summary>
    public static List<McqItem> Load(string path, string language)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BenchmarkLanguages.Instructions.ContainsKey(language)) throw new ArgumentException($"{path}: no multiple-choice instruction for language '{language}'");
        var file = BenchmarkFile.Load(path, language);
        if (file.Problems.Count > 0) throw new InvalidDataException($"{path}: {file.Problems[0]}");
        return file.Rows.Select(r => new McqItem(r.Index, r.Category, r.Question, r.Answer, r.Image!)).ToList();
    }
}
