namespace Parrot.Parrot.Data.World;

/// <summary>One turn of a LLaVA conversation.</summary>
/// <param name="From">"human", "gpt" or "system".</param>
/// <param name="Value">The text; the first human turn of an image sample starts with "&lt;image&gt;\n".</param>
public sealed record LlavaTurn(string From, string Value);

/// <summary>One LLaVA JSON record (PARROT.md "Data is LLaVA JSON"), plus the language of its text.</summary>
/// <param name="Id">Unique id.</param>
/// <param name="Image">Image path relative to the data root, or null for a text-only sample.</param>
/// <param name="Language">The language code of the conversation (en, zh, pt, ar, tr, ru); an extra key other readers ignore.</param>
/// <param name="Conversations">Alternating human and gpt turns.</param>
public sealed record LlavaSample(string Id, string? Image, string? Language, IReadOnlyList<LlavaTurn> Conversations);

/// <summary>An image of the world: where it is written and the scene it shows.</summary>
/// <param name="Path">Path relative to the world directory ("images/stage1/000000.png").</param>
/// <param name="Split">"stage1" or "stage2".</param>
/// <param name="Scene">The scene.</param>
/// <param name="Caption">Its English caption (the stage-1 answer, or a caption written for a stage-2 image).</param>
public sealed record WorldImage(string Path, string Split, Scene Scene, string Caption);

/// <summary>One benchmark item: a scene and a multiple-choice question asked identically in every language.</summary>
/// <param name="Index">The TSV index (the same row number in every language's file).</param>
/// <param name="Scene">The scene.</param>
/// <param name="Choice">The question with its options; the correct letter is the same in every language.</param>
/// <param name="Variant">The phrasing variant, the same number in every language.</param>
public sealed record BenchmarkItem(int Index, Scene Scene, ChoiceQuestion Choice, int Variant)
{
    /// <summary>The question text in <paramref name="language"/> (without options or instruction, as the TSV's question column).</summary>
    public string QuestionText(WorldLanguage language) => language.Ask(Choice.Question, Variant);

    /// <summary>Option <paramref name="i"/> in <paramref name="language"/>.</summary>
    public string OptionText(WorldLanguage language, int i) => language.Answer(Choice.Question, Choice.Options[i]);
}

/// <summary>A plain-text document for language-model pre-training.</summary>
/// <param name="Id">Unique id.</param>
/// <param name="Language">Its language code.</param>
/// <param name="Text">A caption, then question/answer pairs, one per line.</param>
public sealed record TextDocument(string Id, string Language, string Text);

/// <summary>A whole generated world in memory (images as scenes, not yet rendered).</summary>
public sealed class WorldData
{
    internal WorldData(WorldOptions options, IReadOnlyList<WorldImage> images, IReadOnlyList<LlavaSample> stage1,
        IReadOnlyList<LlavaSample> stage2, IReadOnlyList<BenchmarkItem> benchmark, IReadOnlyList<TextDocument> text)
    {
        Options = options;
        Images = images;
        Stage1 = stage1;
        Stage2 = stage2;
        Benchmark = benchmark;
        Text = text;
    }

    /// <summary>The options it was made with.</summary>
    public WorldOptions Options { get; }

    /// <summary>The training images (stage 1, then stage 2), in file order.</summary>
    public IReadOnlyList<WorldImage> Images { get; }

    /// <summary>The stage-1 caption samples.</summary>
    public IReadOnlyList<LlavaSample> Stage1 { get; }

    /// <summary>The stage-2 instruction samples, languages interleaved in a seeded order.</summary>
    public IReadOnlyList<LlavaSample> Stage2 { get; }

    /// <summary>The benchmark items.</summary>
    public IReadOnlyList<BenchmarkItem> Benchmark { get; }

    /// <summary>The language-model text, one document per scene and language, languages interleaved.</summary>
    public IReadOnlyList<TextDocument> Text { get; }
}
