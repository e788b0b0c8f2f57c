using System.Diagnostics;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Data.World;

/// <summary>What <see cref="WorldGenerator.Generate"/> wrote.</summary>
/// <param name="Directory">The world directory.</param>
/// <param name="Images">Training images written (stage 1 + stage 2).</param>
/// <param name="Stage1">Stage-1 samples.</param>
/// <param name="Stage2PerLanguage">Stage-2 samples per language code.</param>
/// <param name="BenchmarkItems">Benchmark items per language.</param>
/// <param name="TextDocuments">Language-model text documents.</param>
/// <param name="Seconds">Wall time of the generation.</param>
public sealed record WorldSummary(string Directory, int Images, int Stage1, IReadOnlyDictionary<string, int> Stage2PerLanguage,
    int BenchmarkItems, int TextDocuments, double Seconds);

/// <summary>
/// Writes a synthetic multilingual world to a directory:
/// <list type="bullet">
/// <item><c>images/stage1/NNNNNN.png</c>, <c>images/stage2/NNNNNN.png</c> — the training images (8-bit RGB PNG);</item>
/// <item><c>stage1.json</c> — English caption pairs, LLaVA JSON (<c>id</c>, <c>image</c> relative to the world directory,
/// <c>language</c>, <c>conversations</c>);</item>
/// <item><c>stage2.json</c> — instruction data in six languages with the configured imbalance, LLaVA JSON; open answers are
/// a word, a phrase or digits, multiple-choice answers a letter;</item>
/// <item><c>benchmark/mmmb_{en,cn,pt,ar,tr,ru}.tsv</c> — the held-out benchmark as VLMEvalKit MCQ TSVs, one self-contained
/// file per language (every row carries its full base64 PNG; no image references), columns
/// <c>index, image, question, A, B, C, D, answer, category, l2-category, split</c>; row i is the same item in every
/// file: same image, same options in the same order, same answer letter; C and D are empty for two-option items;</item>
/// <item><c>text/lm.jsonl</c> — language-model text, one JSON object per line (<c>id</c>, <c>language</c>, <c>text</c>),
/// each scene described in all six languages;</item>
/// <item><c>labels.json</c> — the attributes of every training image (background; shape, colour, size, position, centre of each object) and an English caption, for vision pre-training;</item>
/// <item><c>world.json</c> — the manifest (seed, options, counts, files, vocabulary), written last: its presence marks a complete world.</item>
/// </list>
/// The JSON, TSV and text files are written atomically (temporary file, then rename); images are written in place
/// and <c>world.json</c> last, so a world without it is incomplete. The same options give byte-identical files.
/// </summary>
public static class WorldGenerator
{
    /// <summary>Name of the manifest file.</summary>
    public const string ManifestName = "world.json";

    /// <summary>Present while a world is being written; lets an interrupted run be repeated into the same directory.</summary>
    public const string PartialMarker = ".world-incomplete";

    private static readonly JsonWriterOptions Indented = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly JsonWriterOptions Compact = new() { Indented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Generates the world into <paramref name="outputDir"/> (created if needed). A directory that already holds a
    /// world (a <c>world.json</c>, or the marker of an interrupted run) is regenerated in place, and images an
    /// earlier, larger world left there are deleted; any other non-empty directory is refused, so user files are
    /// never overwritten.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    /// <exception cref="IOException">The directory is not empty and not a world, or a file cannot be written.</exception>
    public static WorldSummary Generate(string outputDir, WorldOptions options)
    {
        ArgumentNullException.ThrowIfNull(outputDir);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        var world = WorldBuilder.Build(options);
        PrepareDirectory(outputDir);

        int size = options.ImageSize;
        // Images are written in place, not through a temporary file: a rename per image doubles the cost on
        // slow file systems, and the manifest written last already tells a complete world from a torn one.
        Parallel.For(0, world.Images.Count, i =>
        {
            var image = world.Images[i];
            File.WriteAllBytes(Path.Combine(outputDir, image.Path), SceneRenderer.RenderPng(image.Scene, size));
        });
        RemoveStaleImages(outputDir, world.Images);

        AtomicFile.Write(Path.Combine(outputDir, "stage1.json"), s => WriteLlava(s, world.Stage1));
        AtomicFile.Write(Path.Combine(outputDir, "stage2.json"), s => WriteLlava(s, world.Stage2));
        AtomicFile.Write(Path.Combine(outputDir, "labels.json"), s => WriteLabels(s, world.Images));
        AtomicFile.Write(Path.Combine(outputDir, "text", "lm.jsonl"), s => WriteText(s, world.Text));

        var base64 = new string[world.Benchmark.Count];
        Parallel.For(0, base64.Length, i => base64[i] = Convert.ToBase64String(SceneRenderer.RenderPng(world.Benchmark[i].Scene, size)));
        foreach (var language in WorldLanguage.All)
            AtomicFile.WriteAllText(Path.Combine(outputDir, BenchmarkFile(language)), BenchmarkTsv(world.Benchmark, base64, language));

        var perLanguage = PerLanguage(world);
        AtomicFile.Write(Path.Combine(outputDir, ManifestName), s => WriteManifest(s, world, perLanguage));
        File.Delete(Path.Combine(outputDir, PartialMarker));
        return new WorldSummary(outputDir, world.Images.Count, world.Stage1.Count, perLanguage, world.Benchmark.Count, world.Text.Count,
            clock.Elapsed.TotalSeconds);
    }

    /// <summary>The benchmark file of a language, relative to the world directory ("benchmark/mmmb_cn.tsv" for Chinese).</summary>
    public static string BenchmarkFile(WorldLanguage language) => $"benchmark/mmmb_{language.BenchmarkCode}.tsv";

    /// <summary>The TSV column names, in order.</summary>
    public static readonly string[] BenchmarkColumns = ["index", "image", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "split"];

    /// <summary>The <c>split</c> value of every benchmark row.</summary>
    public const string BenchmarkSplit = "dev";

    private static void PrepareDirectory(string dir)
    {
        if (File.Exists(dir)) throw new IOException($"world output '{dir}' is a file, not a directory");
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
        {
            if (!File.Exists(Path.Combine(dir, ManifestName)) && !File.Exists(Path.Combine(dir, PartialMarker)))
                throw new IOException($"world output directory '{dir}' is not empty and holds no {ManifestName}; refusing to write into it (choose an empty or new directory)");
        }
        Directory.CreateDirectory(dir);
        // Mark the world incomplete before touching anything, and only then drop the manifest: an interrupted
        // run never looks complete, and can be rerun into the same directory.
        AtomicFile.WriteAllText(Path.Combine(dir, PartialMarker), "a parrot world is being written here; world.json appears when it is complete\n");
        File.Delete(Path.Combine(dir, ManifestName));
        foreach (var sub in new[] { "images/stage1", "images/stage2", "benchmark", "text" })
            Directory.CreateDirectory(Path.Combine(dir, sub));
    }

    /// <summary>Deletes images an earlier, larger world left behind (overwriting the others is cheaper than deleting them all).</summary>
    private static void RemoveStaleImages(string dir, IReadOnlyList<WorldImage> images)
    {
        var keep = new HashSet<string>(images.Select(i => Path.GetFullPath(Path.Combine(dir, i.Path))));
        foreach (var sub in new[] { "images/stage1", "images/stage2" })
        foreach (var file in Directory.EnumerateFiles(Path.Combine(dir, sub)))
            if (!keep.Contains(Path.GetFullPath(file))) File.Delete(file);
    }

    private static void WriteLlava(Stream stream, IReadOnlyList<LlavaSample> samples)
    {
        using var w = new Utf8JsonWriter(stream, Indented);
        w.WriteStartArray();
        foreach (var s in samples)
        {
            w.WriteStartObject();
            w.WriteString("id", s.Id);
            if (s.Image is not null) w.WriteString("image", s.Image);
            if (s.Language is not null) w.WriteString("language", s.Language);
            w.WriteStartArray("conversations");
            foreach (var t in s.Conversations)
            {
                w.WriteStartObject();
                w.WriteString("from", t.From);
                w.WriteString("value", t.Value);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    private static void WriteLabels(Stream stream, IReadOnlyList<WorldImage> images)
    {
        // Compact: indentation would triple the size of the largest file for no reader's benefit.
        using var w = new Utf8JsonWriter(stream, Compact);
        w.WriteStartArray();
        foreach (var image in images)
        {
            w.WriteStartObject();
            w.WriteString("image", image.Path);
            w.WriteString("split", image.Split);
            w.WriteString("background", WorldPalette.Id(image.Scene.Background));
            w.WriteNumber("count", image.Scene.Objects.Count);
            w.WriteStartArray("objects");
            foreach (var o in image.Scene.Objects)
            {
                w.WriteStartObject();
                w.WriteString("shape", WorldPalette.Id(o.Shape));
                w.WriteString("color", WorldPalette.Id(o.Color));
                w.WriteString("size", WorldPalette.Id(o.Size));
                w.WriteString("position", WorldPalette.Id(o.Slot));
                w.WriteNumber("x", Math.Round(o.CenterX, 4));
                w.WriteNumber("y", Math.Round(o.CenterY, 4));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("caption", image.Caption);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    private static void WriteText(Stream stream, IReadOnlyList<TextDocument> docs)
    {
        foreach (var d in docs)
        {
            using (var w = new Utf8JsonWriter(stream, Compact))
            {
                w.WriteStartObject();
                w.WriteString("id", d.Id);
                w.WriteString("language", d.Language);
                w.WriteString("text", d.Text);
                w.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
        }
    }

    /// <summary>The benchmark TSV of one language; every field is checked to hold no tab, newline or quote.</summary>
    internal static string BenchmarkTsv(IReadOnlyList<BenchmarkItem> items, IReadOnlyList<string> base64, WorldLanguage language)
    {
        var sb = new StringBuilder();
        sb.Append(string.Join('\t', BenchmarkColumns)).Append('\n');
        for (int i = 0; i < items.Count; i++)
        {
            var item = items[i];
            var fields = new string[BenchmarkColumns.Length];
            fields[0] = item.Index.ToString(System.Globalization.CultureInfo.InvariantCulture);
            fields[1] = base64[i];
            fields[2] = item.QuestionText(language);
            for (int k = 0; k < 4; k++) fields[3 + k] = k < item.Choice.Options.Count ? item.OptionText(language, k) : "";
            fields[7] = item.Choice.CorrectLetter.ToString();
            fields[8] = QuestionCatalog.CategoryId(item.Choice.Question.Category);
            fields[9] = QuestionCatalog.L2CategoryId(item.Choice.Question.Category);
            fields[10] = BenchmarkSplit;
            foreach (var f in fields)
                if (f.AsSpan().IndexOfAny("\t\n\r\"") >= 0)
                    throw new InvalidOperationException($"benchmark row {item.Index} ({language.Code}) has a field with a tab, newline or quote: {f}");
            sb.Append(string.Join('\t', fields)).Append('\n');
        }
        return sb.ToString();
    }

    private static Dictionary<string, int> PerLanguage(WorldData world)
    {
        var counts = WorldLanguage.All.ToDictionary(l => l.Code, _ => 0);
        foreach (var s in world.Stage2) counts[s.Language!]++;
        return counts;
    }

    private static void WriteManifest(Stream stream, WorldData world, IReadOnlyDictionary<string, int> perLanguage)
    {
        var o = world.Options;
        using var w = new Utf8JsonWriter(stream, Indented);
        w.WriteStartObject();
        w.WriteString("format", "parrot-world");
        w.WriteNumber("version", 1);
        w.WriteNumber("seed", o.Seed);
        w.WriteNumber("image_size", o.ImageSize);

        w.WriteStartObject("options");
        w.WriteNumber("stage1", o.Stage1Count);
        w.WriteNumber("stage2", o.Stage2Count);
        w.WriteNumber("benchmark", o.BenchmarkCount);
        w.WriteNumber("text_scenes", o.TextScenes);
        w.WriteString("text_format", o.TextFormat == WorldTextFormat.ChatMl ? "chatml" : "plain");
        w.WriteStartObject("language_weights");
        for (int l = 0; l < WorldLanguage.All.Count; l++) w.WriteNumber(WorldLanguage.All[l].Code, o.LanguageWeights[l]);
        w.WriteEndObject();
        w.WriteNumber("multiple_choice_fraction", o.MultipleChoiceFraction);
        w.WriteNumber("max_turns", o.MaxTurns);
        w.WriteEndObject();

        w.WriteStartObject("counts");
        w.WriteNumber("images", world.Images.Count);
        w.WriteNumber("stage1", world.Stage1.Count);
        w.WriteNumber("stage2", world.Stage2.Count);
        w.WriteStartObject("stage2_per_language");
        foreach (var (code, n) in perLanguage) w.WriteNumber(code, n);
        w.WriteEndObject();
        w.WriteNumber("benchmark_items_per_language", world.Benchmark.Count);
        w.WriteStartObject("benchmark_per_category");
        foreach (var c in QuestionCatalog.Categories) w.WriteNumber(QuestionCatalog.CategoryId(c), world.Benchmark.Count(b => b.Choice.Question.Category == c));
        w.WriteEndObject();
        w.WriteNumber("text_documents", world.Text.Count);
        w.WriteEndObject();

        w.WriteStartObject("files");
        w.WriteString("images", "images/");
        w.WriteString("stage1", "stage1.json");
        w.WriteString("stage2", "stage2.json");
        w.WriteString("labels", "labels.json");
        w.WriteString("text", "text/lm.jsonl");
        w.WriteStartObject("benchmark");
        foreach (var l in WorldLanguage.All) w.WriteString(l.Code, BenchmarkFile(l));
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartObject("benchmark");
        w.WriteString("format", "VLMEvalKit multiple-choice TSV, one self-contained file per language (full base64 PNG in every row); row i is the same item, options and answer letter in every language");
        w.WriteStartArray("columns");
        foreach (var c in BenchmarkColumns) w.WriteStringValue(c);
        w.WriteEndArray();
        w.WriteStartArray("categories");
        foreach (var c in QuestionCatalog.Categories) w.WriteStringValue(QuestionCatalog.CategoryId(c));
        w.WriteEndArray();
        w.WriteString("split", BenchmarkSplit);
        w.WriteEndObject();

        w.WriteStartObject("vocabulary");
        WriteIds(w, "colors", WorldPalette.ObjectColors.Select(WorldPalette.Id));
        WriteIds(w, "background_colors", WorldPalette.BackgroundColors.Select(WorldPalette.Id));
        WriteIds(w, "shapes", WorldPalette.Shapes.Select(WorldPalette.Id));
        WriteIds(w, "sizes", Enum.GetValues<SizeClass>().Select(WorldPalette.Id));
        WriteIds(w, "positions", WorldPalette.Slots.Select(WorldPalette.Id));
        w.WriteEndObject();

        w.WriteStartObject("instructions");
        foreach (var l in WorldLanguage.All)
        {
            w.WriteStartObject(l.Code);
            w.WriteString("multiple_choice", l.ChoiceInstruction);
            w.WriteString("short_answer", l.ShortAnswerInstruction);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteEndObject();
        w.Flush();
        stream.WriteByte((byte)'\n');
    }

    private static void WriteIds(Utf8JsonWriter w, string name, IEnumerable<string> ids)
    {
        w.WriteStartArray(name);
        foreach (var id in ids) w.WriteStringValue(id);
        w.WriteEndArray();
    }
}
