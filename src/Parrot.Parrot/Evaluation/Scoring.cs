using System.Globalization;

namespace Parrot.Parrot.Evaluation;

/// <summary>How answers combine into scored units.</summary>
public enum ScoringProtocol
{
    /// <summary>Each question is a unit.</summary>
    Vanilla,
    /// <summary>MMBench circular evaluation: rows with index ≥ 1e6 are option-rotated copies of index mod 1e6; a unit counts only if all its copies are right.</summary>
    Circular,
    /// <summary>MMMB pairing: rows sharing a group value form a unit that counts only if all are right.</summary>
    Grouped,
}

/// <summary>One scored question.</summary>
/// <param name="Index">The row's index (circular copies share <c>Index % 1e6</c>).</param>
/// <param name="Group">The row's group (grouped protocol), or null when it has none: it is then a unit of its own.</param>
/// <param name="Category">The row's category ("" when the file has none).</param>
/// <param name="Hit">Whether the extracted answer is the right letter.</param>
/// <param name="L2Category">The row's l2-category ("" when the file has none).</param>
public sealed record ScoredItem(long Index, string? Group, string Category, bool Hit, string L2Category = "");

/// <summary>A scored unit: a question, all circular copies of one question, or one group.</summary>
/// <param name="Key">The unit's key: the index, <c>index % 1e6</c>, or the group.</param>
/// <param name="Category">Category of the unit's first row (the original question for circular units).</param>
/// <param name="L2Category">Its l2-category.</param>
/// <param name="Right">Whether every row of the unit is right.</param>
/// <param name="Rows">How many rows the unit has.</param>
public sealed record ScoredUnit(string Key, string Category, string L2Category, bool Right, int Rows);

/// <summary>The accuracy of one dataset under a protocol; accuracies are fractions in [0, 1].</summary>
/// <param name="Protocol">The protocol.</param>
/// <param name="Count">Scored units.</param>
/// <param name="Overall">Share of units right (0 when there are none).</param>
/// <param name="PerCategory">Per non-empty category.</param>
/// <param name="PerL2Category">Per non-empty l2-category.</param>
public sealed record ScoreReport(ScoringProtocol Protocol, int Count, double Overall,
    IReadOnlyDictionary<string, double> PerCategory, IReadOnlyDictionary<string, double> PerL2Category);

/// <summary>Accuracy of a set of items under a protocol.</summary>
public static class Scoring
{
    /// <summary>The protocol for a file: circular when its name contains "mmbench" (any case), grouped when a group column exists, else vanilla.</summary>
    public static ScoringProtocol ProtocolFor(string fileName, bool hasGroupColumn) =>
        fileName.Contains("mmbench", StringComparison.OrdinalIgnoreCase) ? ScoringProtocol.Circular
        : hasGroupColumn ? ScoringProtocol.Grouped : ScoringProtocol.Vanilla;

    /// <summary>The protocol's name in outputs: vanilla, circular or grouped.</summary>
    public static string Name(ScoringProtocol protocol) => protocol switch
    {
        ScoringProtocol.Vanilla => "vanilla",
        ScoringProtocol.Circular => "circular",
        ScoringProtocol.Grouped => "grouped",
        _ => throw new ArgumentOutOfRangeException(nameof(protocol)),
    };

    /// <summary>The protocol named <paramref name="name"/> (vanilla, circular or grouped; any case).</summary>
    public static ScoringProtocol Parse(string name) => name?.Trim().ToLowerInvariant() switch
    {
        "vanilla" => ScoringProtocol.Vanilla,
        "circular" => ScoringProtocol.Circular,
        "grouped" => ScoringProtocol.Grouped,
        _ => throw new ArgumentException($"unknown protocol '{name}' (known: vanilla, circular, grouped)"),
    };

    /// <summary>The key of the unit a row belongs to under <paramref name="protocol"/>.</summary>
    public static string UnitKey(long index, string? group, ScoringProtocol protocol) => protocol switch
    {
        ScoringProtocol.Circular => "i" + (index % 1_000_000).ToString(CultureInfo.InvariantCulture),
        ScoringProtocol.Grouped when !string.IsNullOrEmpty(group) => "g" + group,
        _ => "i" + index.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The scored units, in the order of their first row.</summary>
    public static List<ScoredUnit> ScoreUnits(IEnumerable<ScoredItem> items, ScoringProtocol protocol)
    {
        ArgumentNullException.ThrowIfNull(items);
        return items.GroupBy(i => UnitKey(i.Index, i.Group, protocol), StringComparer.Ordinal)
            .Select(g =>
            {
                // The circular unit's category is the original question's (the smallest index).
                var first = protocol == ScoringProtocol.Circular ? g.MinBy(i => i.Index)! : g.First();
                return new ScoredUnit(g.Key[1..], first.Category, first.L2Category, g.All(i => i.Hit), g.Count());
            }).ToList();
    }

    /// <summary>The scored units: each a (category, all-right) pair.</summary>
    public static List<(string Category, bool Right)> Units(IEnumerable<ScoredItem> items, ScoringProtocol protocol) =>
        ScoreUnits(items, protocol).Select(u => (u.Category, u.Right)).ToList();

    /// <summary>Overall and per-category accuracy (fractions in [0, 1]) and the number of units.</summary>
    public static (double Overall, int Count, Dictionary<string, double> PerCategory) Accuracy(IEnumerable<ScoredItem> items, ScoringProtocol protocol)
    {
        var units = ScoreUnits(items, protocol);
        double overall = units.Count == 0 ? 0 : units.Count(u => u.Right) / (double)units.Count;
        var per = units.GroupBy(u => u.Category).ToDictionary(g => g.Key, g => g.Count(u => u.Right) / (double)g.Count());
        return (overall, units.Count, per);
    }

    /// <summary>Overall accuracy and accuracy per category and per l2-category (empty names left out).</summary>
    public static ScoreReport Score(IEnumerable<ScoredItem> items, ScoringProtocol protocol)
    {
        var units = ScoreUnits(items, protocol);
        double overall = units.Count == 0 ? 0 : units.Count(u => u.Right) / (double)units.Count;
        return new ScoreReport(protocol, units.Count, overall, Per(units, u => u.Category), Per(units, u => u.L2Category));

        static Dictionary<string, double> Per(List<ScoredUnit> units, Func<ScoredUnit, string> key) =>
            units.Where(u => key(u).Length > 0).GroupBy(key, StringComparer.Ordinal)
                .OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.Count(u => u.Right) / (double)g.Count(), StringComparer.Ordinal);
    }
}
