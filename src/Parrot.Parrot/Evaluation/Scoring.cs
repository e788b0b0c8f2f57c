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
public sealed record ScoredItem(long Index, string? Group, string Category, bool Hit);

/// <summary>Accuracy of a set of items under a protocol.</summary>
public static class Scoring
{
    /// <summary>The protocol for a file: circular when its name contains "mmbench", grouped when a group column exists, else vanilla.</summary>
    public static ScoringProtocol ProtocolFor(string fileName, bool hasGroupColumn) =>
        fileName.Contains("mmbench", StringComparison.OrdinalIgnoreCase) ? ScoringProtocol.Circular
        : hasGroupColumn ? ScoringProtocol.Grouped : ScoringProtocol.Vanilla;

    /// <summary>The scored units: each a (category, all-right) pair.</summary>
    public static List<(string Category, bool Right)> Units(IEnumerable<ScoredItem> items, ScoringProtocol protocol)
    {
        var list = items.ToList();
        return protocol switch
        {
            ScoringProtocol.Vanilla => list.Select(i => (i.Category, i.Hit)).ToList(),
            ScoringProtocol.Circular => list.GroupBy(i => i.Index % 1_000_000)
                .Select(g => (g.OrderBy(i => i.Index).First().Category, g.All(i => i.Hit))).ToList(),
            _ => list.GroupBy(i => i.Group ?? i.Index.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Select(g => (g.First().Category, g.All(i => i.Hit))).ToList(),
        };
    }

    /// <summary>Overall and per-category accuracy (fractions in [0, 1]) and the number of units.</summary>
    public static (double Overall, int Count, Dictionary<string, double> PerCategory) Accuracy(IEnumerable<ScoredItem> items, ScoringProtocol protocol)
    {
        var units = Units(items, protocol);
        double overall = units.Count == 0 ? 0 : units.Count(u => u.Right) / (double)units.Count;
        var per = units.GroupBy(u => u.Category).ToDictionary(g => g.Key, g => g.Count(u => u.Right) / (double)g.Count());
        return (overall, units.Count, per);
    }
}
