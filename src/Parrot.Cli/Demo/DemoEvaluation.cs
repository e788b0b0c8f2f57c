using Parrot.Parrot.Evaluation;
using Parrot.Parrot.Model;

namespace Parrot.Cli.Demo;

/// <summary>A model's results on the six-language benchmark.</summary>
/// <param name="Accuracy">Per language (en, zh, pt, ar, tr, ru order), the fraction of questions answered right.</param>
/// <param name="Counts">Questions per language.</param>
/// <param name="Routing">Mean router probabilities per expert and language (null without the MoE).</param>
/// <param name="Responses">Every answer, per language, in file order.</param>
/// <param name="PerCategory">Per language, the accuracy of each question category.</param>
internal sealed record BenchmarkScores(
    IReadOnlyDictionary<string, double> Accuracy, IReadOnlyDictionary<string, int> Counts,
    RoutingDistribution? Routing, IReadOnlyDictionary<string, IReadOnlyList<McqResponse>> Responses,
    IReadOnlyDictionary<string, Dictionary<string, double>> PerCategory);

/// <summary>
/// The demo's evaluation, behind one function (<see cref="Evaluate"/>) so that the full `parrot eval` harness
/// can replace it: every world benchmark file (benchmark/mmmb_{en,cn,pt,ar,tr,ru}.tsv) is asked with the
/// PARROT.md prompt, answered greedily, the letter extracted by rule and scored as vanilla MCQ accuracy.
/// </summary>
internal sealed class DemoEvaluation(string benchmarkDir, SimpleMcqEvaluator evaluator)
{
    /// <summary>The languages in the order of the paper's tables, with the world's file codes.</summary>
    public static readonly (string Language, string FileCode)[] Languages = [("en", "en"), ("zh", "cn"), ("pt", "pt"), ("ar", "ar"), ("tr", "tr"), ("ru", "ru")];

    private readonly Dictionary<string, List<McqItem>> _items = new(StringComparer.Ordinal);

    /// <summary>The questions of one language (read once).</summary>
    public IReadOnlyList<McqItem> Items(string language)
    {
        if (_items.TryGetValue(language, out var items)) return items;
        var code = Languages.First(l => l.Language == language).FileCode;
        var path = Path.Combine(benchmarkDir, $"mmmb_{code}.tsv");
        if (!File.Exists(path)) throw new CliException($"{path}: benchmark file missing");
        items = McqItems.Load(path, language);
        if (items.Count == 0) throw new CliException($"{path}: the benchmark has no questions");
        _items[language] = items;
        return items;
    }

    /// <summary>
    /// Asks <paramref name="model"/> every question; <paramref name="progress"/> hears after each language. With
    /// <paramref name="swapImages"/> question i is shown the image of question i + n/2 instead of its own (an
    /// ablation: a model that reads the image falls towards chance, one that ignores it keeps its score).
    /// </summary>
    public BenchmarkScores Evaluate(ParrotForCausalLM model, Action<string, double>? progress = null, bool swapImages = false)
    {
        model.Eval();
        var accuracy = new Dictionary<string, double>(StringComparer.Ordinal);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var responses = new Dictionary<string, IReadOnlyList<McqResponse>>(StringComparer.Ordinal);
        var perCategory = new Dictionary<string, Dictionary<string, double>>(StringComparer.Ordinal);
        RoutingDistribution? routing = model.MoeEnabled ? new RoutingDistribution(model.Config.NumExperts) : null;
        foreach (var (language, _) in Languages)
        {
            var items = Items(language);
            if (swapImages) items = items.Select((item, i) => item with { ImageBase64 = items[(i + items.Count / 2) % items.Count].ImageBase64 }).ToList();
            var answers = items.Select(item => evaluator.Answer(model, item)).ToList();
            foreach (var a in answers)
                if (a.Routing is not null) routing?.Add(language, a.Routing);
            var (overall, count, categories) = Scoring.Accuracy(answers.Select(a => new ScoredItem(a.Item.Index, null, a.Item.Category, a.Hit)), ScoringProtocol.Vanilla);
            accuracy[language] = overall;
            counts[language] = count;
            responses[language] = answers;
            perCategory[language] = categories;
            progress?.Invoke(language, overall);
        }
        return new BenchmarkScores(accuracy, counts, routing, responses, perCategory);
    }
}
