using Parrot.Parrot.Evaluation;

namespace Parrot.Cli.Demo;

/// <summary>A model's results on the six-language benchmark.</summary>
/// <param name="Accuracy">Per language (en, zh, pt, ar, tr, ru order), the fraction of questions answered right.</param>
/// <param name="Counts">Questions per language.</param>
/// <param name="Routing">Mean router probabilities per expert and language (null without the MoE).</param>
/// <param name="Responses">Every answer, per language, in file order.</param>
/// <param name="PerCategory">Per language, the accuracy of each question category.</param>
internal sealed record BenchmarkScores(
    IReadOnlyDictionary<string, double> Accuracy, IReadOnlyDictionary<string, int> Counts,
    RoutingDistribution? Routing, IReadOnlyDictionary<string, IReadOnlyList<PredictedRow>> Responses,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> PerCategory);

/// <summary>
/// The demo's evaluation: the `parrot eval` harness (<see cref="Evaluator"/> with <see cref="ParrotAnswerGenerator"/>)
/// run on a saved model directory over every world benchmark file (benchmark/mmmb_{en,cn,pt,ar,tr,ru}.tsv): the
/// PARROT.md prompt with the image, greedy decoding, rule-based extraction, each file scored with its protocol
/// (vanilla for the world's files), predictions.tsv / summary.json / summary.md written per model under
/// <paramref name="reportDir"/>. The harness also captures the MoE routing per language (Figure 7c) and runs the
/// swapped-image ablation.
/// </summary>
/// <param name="benchmarkDir">The world's benchmark folder.</param>
/// <param name="visionDir">The CLIP tower the models were trained with.</param>
/// <param name="reportDir">Where each evaluation's predictions and summaries go (one folder per model and variant).</param>
/// <param name="maxNewTokens">Most tokens generated per answer.</param>
internal sealed class DemoEvaluation(string benchmarkDir, string visionDir, string reportDir, int maxNewTokens)
{
    /// <summary>The languages in the order of the paper's tables, with the world's file codes.</summary>
    public static readonly (string Language, string FileCode)[] Languages = [("en", "en"), ("zh", "cn"), ("pt", "pt"), ("ar", "ar"), ("tr", "tr"), ("ru", "ru")];

    private readonly Dictionary<string, BenchmarkFile> _files = new(StringComparer.Ordinal);

    /// <summary>
    /// The benchmark file of one language (read once). Unlike `parrot eval`, which skips and reports malformed rows,
    /// the demo's own benchmark must be whole: the first malformed row is an error naming the file, the row and its index.
    /// </summary>
    public BenchmarkFile File(string language)
    {
        if (_files.TryGetValue(language, out var file)) return file;
        var code = Languages.First(l => l.Language == language).FileCode;
        var path = Path.Combine(benchmarkDir, $"mmmb_{code}.tsv");
        if (!System.IO.File.Exists(path)) throw new CliException($"{path}: benchmark file missing");
        try { file = BenchmarkFile.Load(path, language); }
        catch (InvalidDataException e) { throw new CliException(e.Message); }
        if (file.Problems.Count > 0) throw new CliException($"{path}: {file.Problems[0]}");
        if (file.Rows.Count == 0) throw new CliException($"{path}: the benchmark has no questions");
        _files[language] = file;
        return file;
    }

    /// <summary>The folder an evaluation's predictions and summaries go to.</summary>
    public string OutputFolder(string name, bool swapImages) => Path.Combine(reportDir, swapImages ? name + "_images_swapped" : name);

    /// <summary>
    /// Asks the model saved in <paramref name="modelDir"/> every question (as `parrot eval --model DIR --vision
    /// TOWER` does) and writes the results to <see cref="OutputFolder"/>; <paramref name="progress"/> hears after
    /// each language. With <paramref name="swapImages"/> question i is shown the image of question i + n/2 instead
    /// of its own (<see cref="EvaluationOptions.SwapImages"/>).
    /// </summary>
    public BenchmarkScores Evaluate(string modelDir, string name, Action<string, double>? progress = null, bool swapImages = false)
    {
        using var generator = ParrotAnswerGenerator.Load(modelDir, visionDir, captureRouting: true);
        if (!generator.HasVisionTower) throw new CliException($"{modelDir}: no vision tower loaded from {visionDir}");
        var options = new EvaluationOptions { MaxNewTokens = maxNewTokens, SwapImages = swapImages };
        var accuracy = new Dictionary<string, double>(StringComparer.Ordinal);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var responses = new Dictionary<string, IReadOnlyList<PredictedRow>>(StringComparer.Ordinal);
        var perCategory = new Dictionary<string, IReadOnlyDictionary<string, double>>(StringComparer.Ordinal);
        var results = new List<DatasetResult>();
        foreach (var (language, _) in Languages)
        {
            var file = File(language);
            var result = Evaluator.Run([file], generator, options)[0];
            if (result.Problems.Count > 0) throw new CliException($"{file.Name}: {result.Problems[0]}");
            results.Add(result);
            accuracy[language] = result.Score.Overall;
            counts[language] = result.Score.Count;
            responses[language] = result.Rows;
            perCategory[language] = result.Score.PerCategory;
            progress?.Invoke(language, result.Score.Overall);
        }
        EvaluationReport.Write(OutputFolder(name, swapImages), results);
        return new BenchmarkScores(accuracy, counts, generator.Routing, responses, perCategory);
    }
}
