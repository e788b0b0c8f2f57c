namespace Parrot.Parrot.Data.World;

/// <summary>How the world's language-model text documents are written.</summary>
public enum WorldTextFormat
{
    /// <summary>The scene's description, then questions and answers, one per line.</summary>
    Plain,
    /// <summary>
    /// Qwen ChatML conversations (default system turn): the user turn gives the scene's description where an
    /// image would stand, then asks a question or, in about a third of the documents, for a short English
    /// caption (the stage-1 task); the assistant answers; up to two more questions may follow. This is the
    /// format the multimodal model is later prompted in, with the visual tokens in the description's place.
    /// </summary>
    ChatMl,
}

/// <summary>What a synthetic world contains. Every value has a default sized for the CPU demo.</summary>
public sealed record WorldOptions
{
    /// <summary>The seed: the same seed and options give byte-identical files.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Side of the square images in pixels (32–1024; below about 48 small stars and hearts become blobs).</summary>
    public int ImageSize { get; init; } = 64;

    /// <summary>Stage-1 image–caption pairs (English only, one image each).</summary>
    public int Stage1Count { get; init; } = 2000;

    /// <summary>Stage-2 instruction samples in all languages together (one image each), split by <see cref="LanguageWeights"/>.</summary>
    public int Stage2Count { get; init; } = 4000;

    /// <summary>Benchmark items; each is asked in all six languages. Categories take turns, so a multiple of 7 balances them.</summary>
    public int BenchmarkCount { get; init; } = 280;

    /// <summary>Scenes described in the language-model text; each gives one document per language.</summary>
    public int TextScenes { get; init; } = 1000;

    /// <summary>How the language-model text documents are written (<see cref="WorldTextFormat"/>).</summary>
    public WorldTextFormat TextFormat { get; init; } = WorldTextFormat.Plain;

    /// <summary>
    /// Relative share of each language in the stage-2 data, in the order of <see cref="WorldLanguage.All"/>
    /// (en, zh, pt, ar, tr, ru). The default is the paper's 665k : 71k : 14k : 12k : 17k : 14k.
    /// </summary>
    public IReadOnlyList<double> LanguageWeights { get; init; } = [665, 71, 14, 12, 17, 14];

    /// <summary>Fraction of stage-2 and text turns asked as multiple choice (answered with a letter); the rest are open.</summary>
    public double MultipleChoiceFraction { get; init; } = 0.5;

    /// <summary>Most question–answer turns in one stage-2 sample (1–7; each turn asks about another category).</summary>
    public int MaxTurns { get; init; } = 2;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid value.</summary>
    public void Validate()
    {
        if (ImageSize is < 32 or > 1024) throw new ArgumentException($"the image size must be 32–1024 pixels, got {ImageSize}");
        if (Stage1Count < 0) throw new ArgumentException($"the stage-1 count must be ≥ 0, got {Stage1Count}");
        if (Stage2Count < 0) throw new ArgumentException($"the stage-2 count must be ≥ 0, got {Stage2Count}");
        if (BenchmarkCount < 0) throw new ArgumentException($"the benchmark count must be ≥ 0, got {BenchmarkCount}");
        if (TextScenes < 0) throw new ArgumentException($"the text scene count must be ≥ 0, got {TextScenes}");
        const int limit = 10_000_000;
        if (Stage1Count > limit || Stage2Count > limit || BenchmarkCount > limit || TextScenes > limit)
            throw new ArgumentException($"counts are limited to {limit:N0} each");
        if (LanguageWeights is null || LanguageWeights.Count != WorldLanguage.All.Count)
            throw new ArgumentException($"give {WorldLanguage.All.Count} language weights (en, zh, pt, ar, tr, ru), got {LanguageWeights?.Count ?? 0}");
        if (LanguageWeights.Any(w => !(w >= 0) || double.IsInfinity(w)) || !(LanguageWeights.Sum() > 0))
            throw new ArgumentException($"language weights must be finite, ≥ 0 and not all zero, got [{string.Join(", ", LanguageWeights)}]");
        if (!Enum.IsDefined(TextFormat)) throw new ArgumentException($"unknown text format {(int)TextFormat}");
        if (!(MultipleChoiceFraction >= 0 && MultipleChoiceFraction <= 1))
            throw new ArgumentException($"the multiple-choice fraction must be in [0, 1], got {MultipleChoiceFraction}");
        if (MaxTurns < 1 || MaxTurns > QuestionCatalog.Categories.Length)
            throw new ArgumentException($"max turns must be 1–{QuestionCatalog.Categories.Length}, got {MaxTurns}");
    }

    /// <summary>
    /// Stage-2 samples per language (order of <see cref="WorldLanguage.All"/>): the weights applied to
    /// <see cref="Stage2Count"/> by largest remainder, so the counts sum exactly to it.
    /// </summary>
    public int[] Stage2CountsPerLanguage()
    {
        double total = LanguageWeights.Sum();
        var exact = LanguageWeights.Select(w => Stage2Count * w / total).ToArray();
        var counts = exact.Select(e => (int)Math.Floor(e)).ToArray();
        int missing = Stage2Count - counts.Sum();
        // Ties go to the earlier language, which keeps the split independent of sort stability.
        foreach (int i in Enumerable.Range(0, counts.Length).OrderByDescending(i => exact[i] - counts[i]).ThenBy(i => i).Take(missing)) counts[i]++;
        return counts;
    }
}
