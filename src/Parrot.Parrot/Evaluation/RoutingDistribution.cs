namespace Parrot.Parrot.Evaluation;

/// <summary>
/// The expert-routing distribution per language (the paper's Figure 7c): the MoE router's softmax weights
/// of each question are summed per language, and <see cref="Mean"/> gives their average, one probability
/// per expert. Languages are kept in the order they were first seen.
/// </summary>
public sealed class RoutingDistribution
{
    private readonly Dictionary<string, (double[] Sum, int Count)> _byLanguage = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    /// <summary>Creates an empty distribution over <paramref name="experts"/> experts.</summary>
    public RoutingDistribution(int experts)
    {
        if (experts <= 0) throw new ArgumentOutOfRangeException(nameof(experts), experts, "RoutingDistribution: at least one expert");
        Experts = experts;
    }

    /// <summary>Number of experts.</summary>
    public int Experts { get; }

    /// <summary>The languages seen, in order of first appearance.</summary>
    public IReadOnlyList<string> Languages => _order;

    /// <summary>Adds the routing weights of one question asked in <paramref name="language"/>.</summary>
    /// <exception cref="ArgumentException">The weights are not <see cref="Experts"/> finite numbers.</exception>
    public void Add(string language, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(language);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count != Experts) throw new ArgumentException($"RoutingDistribution: {weights.Count} routing weights, expected {Experts}");
        if (weights.Any(w => !double.IsFinite(w))) throw new ArgumentException($"RoutingDistribution: a routing weight of a {language} question is not finite");
        if (!_byLanguage.TryGetValue(language, out var acc))
        {
            acc = (new double[Experts], 0);
            _order.Add(language);
        }
        for (int e = 0; e < Experts; e++) acc.Sum[e] += weights[e];
        _byLanguage[language] = (acc.Sum, acc.Count + 1);
    }

    /// <summary>Questions added for <paramref name="language"/>.</summary>
    public int Count(string language) => _byLanguage.TryGetValue(language, out var acc) ? acc.Count : 0;

    /// <summary>The mean routing weight of each expert over the questions of <paramref name="language"/>.</summary>
    /// <exception cref="KeyNotFoundException">No question of that language was added.</exception>
    public double[] Mean(string language)
    {
        if (!_byLanguage.TryGetValue(language, out var acc) || acc.Count == 0)
            throw new KeyNotFoundException($"RoutingDistribution: no routing weights for language '{language}'");
        return acc.Sum.Select(s => s / acc.Count).ToArray();
    }

    /// <summary>The expert with the largest mean weight for <paramref name="language"/> (the lowest index on ties).</summary>
    public int TopExpert(string language)
    {
        var mean = Mean(language);
        int best = 0;
        for (int e = 1; e < mean.Length; e++) if (mean[e] > mean[best]) best = e;
        return best;
    }
}
